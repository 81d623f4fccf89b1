"""Fixtures for tests/real: the chart installed for real, its operator image running on a real node.

`real` builds the image from this checkout (tools/image/build.sh: the container engine is started,
or installed as root, when missing), starts a `ControlPlane` that a real node can join, the default
simulated GPU fleet, and one `RealNode` (kubelet + containerd, tainted for system pods) with the
image loaded. Without root, the engine, the packages or the built binaries the tests skip with the
reason, or fail under $CI (as the rest of the e2e suite does). Run with `--e2e` (`make test-real`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from devcluster import binaries, realnode
from devcluster.controlplane import REPO, ControlPlane, api_client
from devcluster.fleet import DEFAULT_FLEET, apply_fleet, build_nodes
from devcluster.waiting import wait_for as _wait_for
from tooling import unavailable


@dataclass(frozen=True)
class RealCluster:
    plane: ControlPlane
    node: realnode.RealNode
    api: client.ApiClient
    engine: str
    image: str  # repository:tag, loaded into the node
    build_seconds: float

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig


def build_image(tag: str | None = None) -> tuple[str, float]:
    """tools/image/build.sh (IMAGE=rackfit:<tag> when given) -> (image reference, seconds)."""
    started = time.monotonic()
    env = {**os.environ, **({"IMAGE": f"rackfit:{tag}"} if tag else {})}
    out = subprocess.run([str(REPO / "tools" / "image" / "build.sh")], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=900)
    if out.returncode != 0:
        pytest.fail(f"tools/image/build.sh failed:\n{out.stderr[-4000:]}", pytrace=False)
    return out.stdout.strip().splitlines()[-1], time.monotonic() - started


@pytest.fixture(scope="session")
def real() -> Iterator[RealCluster]:
    try:
        binaries.require("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "helm")
        realnode.check_host()
        engine = realnode.engine()
    except (binaries.BinariesMissing, realnode.RealNodeUnavailable) as e:
        unavailable(str(e))
    image, build_seconds = build_image()
    with ControlPlane(node_ip=realnode.host_ip()) as plane:
        node = realnode.RealNode(plane)
        try:
            with api_client(plane.kubeconfig) as api:
                apply_fleet(client.CoreV1Api(api), build_nodes(DEFAULT_FLEET))
                node.start(engine)
                node.load_image(engine, image)
                yield RealCluster(plane, node, api, engine, image, build_seconds)
        finally:
            node.stop()


@pytest.fixture(scope="session")
def kubectl(real: RealCluster, tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """`kubectl(*args, input=None)` -> CompletedProcess (text; never raises on the exit code)."""
    path = str(binaries.bin_dir() / "kubectl")
    env = {**os.environ, "KUBECONFIG": str(real.kubeconfig), "KUBECACHEDIR": str(tmp_path_factory.mktemp("kc"))}

    def run(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([path, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout)
    return run


@pytest.fixture(scope="session")
def helm(real: RealCluster, tmp_path_factory) -> Callable[..., subprocess.CompletedProcess]:
    """`helm(*args, check=True)`: fails the test with helm's output on a non-zero exit."""
    home = tmp_path_factory.mktemp("helm")
    env = {**os.environ, "KUBECONFIG": str(real.kubeconfig), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        out = subprocess.run([str(binaries.bin_dir() / "helm"), *args], capture_output=True, text=True, env=env,
                             timeout=timeout)
        if check:
            assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out
    return run


@pytest.fixture
def namespace(real: RealCluster) -> Iterator[str]:
    core = client.CoreV1Api(real.api)
    name = f"real-{secrets.token_hex(3)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def wait_for() -> Callable:
    return _wait_for
