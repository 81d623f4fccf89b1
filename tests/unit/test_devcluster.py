"""Cluster-free pieces of devcluster: the pinned version, the PKI, `wait_for`, binary lookup."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from cryptography import x509

from devcluster import binaries
from devcluster.waiting import WaitTimeout, wait_for
from rackfit.certs import write_rsa_key, write_serving_pair

REPO = Path(__file__).resolve().parents[2]


def test_pinned_version_matches_tools_k8s_go_mod():
    go_mod = (REPO / "tools/k8s/go.mod").read_text()
    assert re.search(rf"^\s*k8s\.io/kubernetes {re.escape(binaries.K8S_VERSION)}\b", go_mod, re.M)


def test_bin_dir_honours_override_and_names_the_build_step(monkeypatch, tmp_path):
    monkeypatch.setenv("RACKFIT_K8S_BIN", str(tmp_path))
    assert binaries.bin_dir() == tmp_path
    with pytest.raises(binaries.BinariesMissing, match=r"etcd, kube-apiserver.*make k8s-bin"):
        binaries.require()


def test_serving_certificate_is_signed_by_the_ca_for_loopback(tmp_path):
    ca_path, cert_path, key_path = write_serving_pair(tmp_path, ["127.0.0.1", "localhost"])
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())

    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert key_path.stat().st_mode & 0o077 == 0
    assert write_rsa_key(tmp_path / "sa.key").stat().st_mode & 0o077 == 0


def test_wait_for_returns_the_first_truthy_value():
    calls = iter([None, 0, "ready"])
    assert wait_for(lambda: next(calls), 5, "the third call", interval=0) == "ready"


def test_wait_for_names_what_it_waited_for_and_the_last_error():
    def failing():
        raise ConnectionError("refused")

    with pytest.raises(WaitTimeout, match=r"waiting for the apiserver \(last error: refused\)"):
        wait_for(failing, 0.05, "the apiserver", interval=0.01)


def test_no_two_test_modules_share_a_basename():
    """pytest imports test modules by basename (rootdir, no packages): two of one name make `make test`
    stop at collection, as tests/unit and tests/e2e once did."""
    from collections import Counter
    from pathlib import Path
    names = Counter(p.name for p in (Path(__file__).parents[1]).rglob("test_*.py"))
    assert not [n for n, c in names.items() if c > 1]
