"""Fixtures for the e2e tests: a real control plane with the simulated GPU fleet.

`cluster` starts one `ControlPlane` (kube-controller-manager and the pod simulator included) plus
the default fleet per test session, or uses the cluster in $RACKFIT_E2E_KUBECONFIG (e.g. `make
kind-up`) as it is. Without the built binaries the tests
are skipped with the reason, or fail when $CI is set, so a CI run can never pass by skipping.
Every test gets a fresh `namespace`; `kubectl` runs the built kubectl against the cluster;
`wait_for` polls with a deadline (tests never sleep a fixed time).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from devcluster import binaries
from devcluster.controlplane import ControlPlane, api_client
from devcluster.fleet import DEFAULT_FLEET, apply_fleet, build_nodes
from devcluster.waiting import wait_for as _wait_for
from tooling import unavailable

# Every e2e claim holds on a fleet larger than the demo's 64 nodes and beyond any per-object limit
# (a cap of 64 kopf workers once left the operator idle on bigger clusters): the demo fleet plus
# 320 nodes of instance types the tests do not ask for.
E2E_FLEET = {**DEFAULT_FLEET, "gd-8xa100-i128": 160, "gd-8xl40-i128": 100, "rtxp6000-8x": 60}


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    api: client.ApiClient
    local: bool  # True: our ControlPlane (known version, simulated fleet); False: $RACKFIT_E2E_KUBECONFIG
    started: float  # time.monotonic() when the fixture had the cluster ready


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    external = os.environ.get("RACKFIT_E2E_KUBECONFIG")
    if external:
        with api_client(Path(external)) as api:
            yield Cluster(Path(external), api, local=False, started=time.monotonic())
        return
    try:
        binaries.require()
    except binaries.BinariesMissing as e:
        unavailable(str(e))
    with ControlPlane() as plane, api_client(plane.kubeconfig) as api:
        try:
            apply_fleet(client.CoreV1Api(api), build_nodes(E2E_FLEET))
            yield Cluster(plane.kubeconfig, api, local=True, started=time.monotonic())
        finally:
            # stopping deletes the plane's directory: keep its components' logs beside the operators' (in
            # pytest's basetemp, the last three sessions) to read what a failed test's control plane did
            shutil.copytree(plane.log_dir, tmp_path_factory.getbasetemp() / "control-plane-logs", dirs_exist_ok=True)


@pytest.fixture
def core_v1(cluster: Cluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api)


@pytest.fixture
def custom_objects(cluster: Cluster) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core_v1: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace named after the test, deleted afterwards without waiting (kube-controller-manager
    finishes that in seconds). Its pods are force-deleted first (grace period 0), so that their GPUs
    on the simulated nodes are free for the next test at once, and so that a cluster with no kubelet
    at all (a kind node that died, or a control plane without the pod simulator) cannot keep them
    Terminating."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"e2e-{slug}-{secrets.token_hex(3)}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core_v1.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    core_v1.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess]:
    """`kubectl("get", "nodes", input=None)` -> CompletedProcess (text, never raises on exit code)."""
    built = binaries.bin_dir() / "kubectl"
    path = str(built) if os.access(built, os.X_OK) else shutil.which("kubectl")
    if not path:
        unavailable(f"no kubectl: {binaries.BUILD_HINT}")
    # A private discovery cache, so a fresh CRD is never hidden by a stale ~/.kube/cache.
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "KUBECACHEDIR": str(tmp_path_factory.mktemp("kubecache"))}

    def run(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([path, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout)
    return run


@pytest.fixture(scope="session")
def wait_for() -> Callable:
    """`wait_for(predicate, timeout, what)` -> the predicate's first truthy value, or WaitTimeout."""
    return _wait_for
