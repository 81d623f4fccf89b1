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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rackfit.certs import make_cert, pem_key

_VALIDITY = dt.timedelta(days=7)  # the data dir lives for one test session or one `cluster-up`


@dataclass(frozen=True)
class PKI:
    """Paths of the files `write_pki` wrote."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path


def write_pki(directory: Path) -> PKI:
    """Write ca.crt, apiserver.crt/.key and sa.key into `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = make_cert("rackfit-devcluster-ca", ca_key.public_key(), None, ca_key, ca=True, validity=_VALIDITY)
    serving_key = ec.generate_private_key(ec.SECP256R1())
    sans = (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"))
    serving_cert = make_cert("kube-apiserver", serving_key.public_key(), ca_cert.subject, ca_key, ca=False,
                             validity=_VALIDITY, sans=sans)
    # ServiceAccount tokens are signed RS256 by default, so this key is RSA.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    pki = PKI(directory / "ca.crt", directory / "apiserver.crt", directory / "apiserver.key", directory / "sa.key")
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_cert.write_bytes(serving_cert.public_bytes(serialization.Encoding.PEM))
    pki.serving_key.write_bytes(pem_key(serving_key))
    pki.sa_key.write_bytes(pem_key(sa_key))
    for key in (pki.serving_key, pki.sa_key):
        key.chmod(0o600)
    return pki
