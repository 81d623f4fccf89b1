"""`rackfit operator` as a separate process, exactly as users run it, for the e2e tests."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devcluster.controlplane import free_port
from devcluster.waiting import wait_established

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "rackfit.io_llmworkloads.yaml"


class Operator:
    """Started with `start()`, stopped with `stop()` (SIGTERM, as kubelet does) or `kill()`."""

    def __init__(self, kubeconfig: Path, log: Path, webhooks: bool = False, replan_seconds: float = 2):
        self.kubeconfig, self.log, self.proc = kubeconfig, log, None
        self.metrics_port = free_port()
        self.webhook_port = free_port()
        self.webhooks, self.replan_seconds = webhooks, replan_seconds

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "RACKFIT_METRICS_PORT": str(self.metrics_port),
               "RACKFIT_REPLAN_SECONDS": str(self.replan_seconds), "PYTHONPATH": str(ROOT / "operator"),
               "RACKFIT_WEBHOOKS": "url" if self.webhooks else "off", "RACKFIT_WEBHOOK_PORT": str(self.webhook_port)}
        self.proc = subprocess.Popen([sys.executable, "-m", "rackfit", "operator", "--standalone", "-v"], env=env,
                                     stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def metrics(self) -> str | None:
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read().decode()
        except OSError:
            return None

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-n:]) if self.log.exists() else ""


_BAD_WORKLOAD = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": "webhook-probe"},
                 "spec": {"model": {"preset": "no-such-model"}, "workload": "inference"}}
_LABELLED_POD = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "webhook-probe", "labels": {"rackfit.io/workload": "webhook-probe"}},
                 "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


def webhooks_in_effect(kubectl) -> bool:
    """True once the API server calls both webhooks: a server-side dry run of a bad LLMWorkload is
    refused by the validator, and one of a labelled pod comes back gated by the mutator. (A
    configuration that exists is not yet one the API server uses: its informer lags under load.)"""
    import json

    import yaml
    bad = kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-", input=yaml.safe_dump(_BAD_WORKLOAD))
    if bad.returncode == 0 or "no-such-model" not in bad.stderr:
        return False
    pod = kubectl("create", "--dry-run=server", "-n", "default", "-o", "json", "-f", "-",
                  input=yaml.safe_dump(_LABELLED_POD))
    return pod.returncode == 0 and any(g["name"] == "rackfit.io/placement"
                                       for g in json.loads(pod.stdout)["spec"].get("schedulingGates") or [])


def install_crd(kubectl) -> None:
    """Apply the CRD and wait until it is Established."""
    applied = kubectl("apply", "--server-side", "-f", str(CRD))
    assert applied.returncode == 0, applied.stderr
    wait_established(kubectl, "llmworkloads.rackfit.io")


@contextmanager
def running_operator(cluster, kubectl, wait_for, log: Path, webhooks: bool = False) -> Iterator[Operator]:
    """The CRD installed and an operator started (with webhooks: until the API server calls them);
    stopped afterwards, its log's tail printed."""
    install_crd(kubectl)
    op = Operator(cluster.kubeconfig, log, webhooks=webhooks)
    op.start()
    try:
        if webhooks:
            wait_for(lambda: webhooks_in_effect(kubectl), 60, "the webhooks in effect")
        yield op
    finally:
        op.stop()
        print(op.tail(60), file=sys.stderr)
