"""Certificates and keys for the local control plane, made with `cryptography`.

`ControlPlane` calls `write_pki()` once per data dir: a throwaway CA, the kube-apiserver serving
certificate it signs (SANs 127.0.0.1 and localhost, so clients can verify TLS), and the RSA key
that signs and verifies ServiceAccount tokens. kopf's own self-signed certificates are unusable
on this OS (oscrypto cannot read OpenSSL 3 versions), which is why the harness makes its own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)  # the data dir lives for one test session or one `cluster-up`


@dataclass(frozen=True)
class PKI:
    """Paths of the files `write_pki` wrote."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert(subject: str, public_key, issuer: x509.Name | None, signer, *, ca: bool, sans: tuple[x509.GeneralName, ...] = ()) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew between processes
        .not_valid_after(now + _VALIDITY)
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


def write_pki(directory: Path) -> PKI:
    """Write ca.crt, apiserver.crt/.key and sa.key into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _cert("rackfit-devcluster-ca", ca_key.public_key(), None, ca_key, ca=True)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    sans = (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"))
    serving_cert = _cert("kube-apiserver", serving_key.public_key(), ca_cert.subject, ca_key, ca=False, sans=sans)
    # ServiceAccount tokens are signed RS256 by default, so this key is RSA.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pki = PKI(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key", directory / "sa.key")
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_cert.write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_key.write_bytes(_pem_key(serving_key))
    pki.sa_key.write_bytes(_pem_key(sa_key))
    for key in (pki.serving_key, pki.sa_key):
        key.chmod(0o600)
    return pki
