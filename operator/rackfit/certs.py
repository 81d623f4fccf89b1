"""X.509 certificates made with `cryptography`: a throwaway CA and serving certificates it signs.

Used by the operator to serve its admission webhooks when no certificate is mounted, and by the
local control plane (harness/devcluster: the kube-apiserver's serving pair and ServiceAccount key).
(kopf's own self-signed path needs oscrypto, which fails on OpenSSL 3.)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def sans_for(names: list[str]) -> tuple[x509.GeneralName, ...]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return tuple(out)


def make_cert(subject: str, public_key, issuer: x509.Name | None, signer, *, ca: bool, validity: dt.timedelta,
              sans: tuple[x509.GeneralName, ...] = ()) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between processes
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signer, hashes.SHA256())


def write_serving_pair(directory: Path, names: list[str], validity: dt.timedelta = dt.timedelta(days=365)
                       ) -> tuple[Path, Path, Path]:
    """ca.crt, tls.crt and tls.key (for `names`: DNS names or IPs) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert("rackfit-ca", ca_key.public_key(), None, ca_key, ca=True, validity=validity)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_cert(names[0], key.public_key(), ca.subject, ca_key, ca=False, validity=validity,
                     sans=sans_for(names))
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(pem_cert(ca))
    paths[1].write_bytes(pem_cert(cert))
    paths[2].write_bytes(pem_key(key))
    paths[2].chmod(0o600)
    return paths


def write_rsa_key(path: Path) -> Path:
    """An RSA key (PKCS#8 PEM, mode 600): Kubernetes signs ServiceAccount tokens RS256 by default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem_key(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    path.chmod(0o600)
    return path
