"""NVIDIA's DRA driver's part of a ComputeDomain, on the simulated fleet: what the driver's controller
and kubelet plugin publish, without GPUs or IMEX daemons, so that pods claiming a ComputeDomain's
IMEX channel are scheduled and bound as they would be on GB200 NVL72 nodes.

The driver (github.com/NVIDIA/k8s-dra-driver-gpu, now kubernetes-sigs/dra-driver-nvidia-gpu; the
files named below are at commit 22407113785e78c7763b4637689a201eb39c6199) cannot run without GPUs.
What stands in for it, taken from its source:

- the CRD: `crds/resource.nvidia.com_computedomains.yaml`, the driver's own
  (deployments/helm/dra-driver-nvidia-gpu/crds/), unchanged;
- the DeviceClass `compute-domain-default-channel.nvidia.com` with the chart's CEL selector
  (templates/deviceclass-compute-domain-default-channel.yaml);
- per simulated node of a multi-node NVLink domain (one carrying `nvidia.com/gpu.clique`), the
  ResourceSlice the kubelet plugin publishes: driver `compute-domain.nvidia.com`, pool = the node,
  devices `channel-0` and `daemon-0` with attributes `type` and `id`
  (cmd/compute-domain-kubelet-plugin/driver.go, deviceinfo.go: channels other than 0 are not
  advertised);
- per ComputeDomain, the workload ResourceClaimTemplate the controller creates, named
  `spec.channel.resourceClaimTemplate.name` in its namespace: one request `channel` of that device
  class, with the opaque `ComputeDomainChannelConfig` (domainID = the ComputeDomain's uid,
  allocationMode) for driver `compute-domain.nvidia.com`
  (templates/compute-domain-workload-claim-template.tmpl.yaml, cmd/compute-domain-controller/
  resourceclaimtemplate.go). The driver deletes it through a finalizer when the ComputeDomain goes;
  here an ownerReference to the ComputeDomain lets the garbage collector do that.

No IMEX daemon runs and the ComputeDomain's status is not written: pods bind, and nothing more is
claimed. `python -m devcluster.computedomains --kubeconfig K --ready-file F` is the `compute-domain-sim`
component of a `ControlPlane` (`install` applies the CRD and the DeviceClass first).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from devcluster.fleet import SIMULATED_LABEL
from devcluster.waiting import wait_established

log = logging.getLogger("rackfit.computedomain-sim")
CRD_FILE = Path(__file__).with_name("crds") / "resource.nvidia.com_computedomains.yaml"
DRIVER = "compute-domain.nvidia.com"                          # cmd/compute-domain-kubelet-plugin/main.go
CHANNEL_CLASS = "compute-domain-default-channel.nvidia.com"    # cmd/compute-domain-controller/computedomain.go
CD_LABEL = "resource.nvidia.com/computeDomain"                 # its value: the ComputeDomain's uid
TARGET_LABEL = "resource.nvidia.com/computeDomainTarget"
CLIQUE_LABEL = "nvidia.com/gpu.clique"
GROUP, VERSION, PLURAL = "resource.nvidia.com", "v1beta1", "computedomains"
_WATCH_SECONDS = 240


def crd() -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all(CRD_FILE.read_text()) if d)


def device_class() -> dict[str, Any]:
    """The chart's DeviceClass for a ComputeDomain's default channel (pure)."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": CHANNEL_CLASS},
            "spec": {"selectors": [{"cel": {"expression": (
                f"device.driver == '{DRIVER}' && device.attributes['{DRIVER}'].type == 'channel' && "
                f"device.attributes['{DRIVER}'].id == 0")}}]}}


def _device(kind: str) -> dict[str, Any]:
    return {"name": f"{kind}-0", "attributes": {"type": {"string": kind}, "id": {"int": 0}}}


def resource_slice(node: str) -> dict[str, Any]:
    """The ResourceSlice the kubelet plugin publishes on `node` (pure)."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
            "metadata": {"name": f"{node}-{DRIVER}"},
            "spec": {"driver": DRIVER, "nodeName": node,
                     "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                     "devices": [_device("channel"), _device("daemon")]}}


def claim_template(cd: dict[str, Any]) -> dict[str, Any]:
    """The workload ResourceClaimTemplate the driver's controller makes for ComputeDomain `cd` (pure)."""
    meta, channel = cd["metadata"], cd["spec"]["channel"]
    return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
            "metadata": {"name": channel["resourceClaimTemplate"]["name"], "namespace": meta["namespace"],
                         "labels": {CD_LABEL: meta["uid"], TARGET_LABEL: "Workload"},
                         "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeDomain",
                                              "name": meta["name"], "uid": meta["uid"]}]},
            "spec": {"spec": {"devices": {
                "requests": [{"name": "channel", "exactly": {"deviceClassName": CHANNEL_CLASS}}],
                "config": [{"requests": ["channel"], "opaque": {"driver": DRIVER, "parameters": {
                    "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeDomainChannelConfig",
                    "domainID": meta["uid"], "allocationMode": channel.get("allocationMode") or "Single"}}}]}}}}


def install(kubectl: Path, env: dict[str, str]) -> None:
    """Apply the ComputeDomain CRD and the channel's DeviceClass, and wait until the CRD is served."""
    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(kubectl), *args], input=input, capture_output=True, text=True, env=env, timeout=60)
    out = run("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all([crd(), device_class()]))
    if out.returncode:
        raise RuntimeError(f"ComputeDomain CRD or DeviceClass not applied: {out.stderr}")
    wait_established(run, f"{PLURAL}.{GROUP}", timeout=30)


class Simulator:
    """Two list-and-watch loops: simulated clique nodes -> their ResourceSlice; ComputeDomains -> their
    ResourceClaimTemplate. Both create what is missing and leave what exists (idempotent)."""

    def __init__(self, api_client):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.ready = {"nodes": threading.Event(), "domains": threading.Event()}

    def _create(self, fn, *args) -> None:
        from kubernetes.client.exceptions import ApiException
        try:
            fn(*args)
        except ApiException as e:
            if e.status != 409:  # 409: already there
                raise

    def node(self, node: dict[str, Any]) -> None:
        labels = node["metadata"].get("labels") or {}
        if labels.get(SIMULATED_LABEL) == "true" and labels.get(CLIQUE_LABEL):
            self._create(self.custom.create_cluster_custom_object, "resource.k8s.io", "v1", "resourceslices",
                         resource_slice(node["metadata"]["name"]))

    def domain(self, cd: dict[str, Any]) -> None:
        if cd["metadata"].get("deletionTimestamp"):
            return
        rct = claim_template(cd)
        self._create(self.custom.create_namespaced_custom_object, "resource.k8s.io", "v1",
                     cd["metadata"]["namespace"], "resourceclaimtemplates", rct)
        log.info("%s/%s: ResourceClaimTemplate %s", cd["metadata"]["namespace"], cd["metadata"]["name"],
                 rct["metadata"]["name"])

    def _loop(self, what: str, lister, handle) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while True:
            try:
                listed = json.loads(lister(_preload_content=False).data)
                for obj in listed["items"]:
                    handle(obj)
                self.ready[what].set()
                for event in watch.Watch().stream(lister, resource_version=listed["metadata"]["resourceVersion"],
                                                  timeout_seconds=_WATCH_SECONDS):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        handle(event["raw_object"] if isinstance(event["raw_object"], dict) else event["object"])
            except ApiException as e:
                if e.status != 410:
                    log.warning("%s: API error %s, relisting: %s", what, e.status, e.reason)
                    time.sleep(1)
            except Exception as e:  # the API server restarting, a dropped connection
                log.warning("%s: relisting after %s: %s", what, type(e).__name__, e)
                time.sleep(1)

    def run(self, ready_file: Path | None = None) -> None:
        nodes = threading.Thread(target=self._loop, daemon=True, args=(
            "nodes", lambda **kw: self.core.list_node(label_selector=f"{SIMULATED_LABEL}=true", **kw), self.node))
        domains = threading.Thread(target=self._loop, daemon=True, args=(
            "domains", lambda **kw: self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw), self.domain))
        nodes.start()
        domains.start()
        for event in self.ready.values():
            event.wait()
        if ready_file is not None:
            ready_file.touch()
        nodes.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.computedomains", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, help="touched after the first full list of nodes and domains")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    from kubernetes import config

    with config.new_client_from_config(str(args.kubeconfig)) as api:
        Simulator(api).run(args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
