"""`python -m devcluster.podsim --kubeconfig K --ready-file F`: the kubelet's part of a pod's life, faked.

The simulated nodes have no kubelet, so without this a bound pod stays `Pending` forever, a
Deployment rollout never completes (new pods never become available, so old ones are never scaled
down), a StatefulSet never gets past pod 0, and a deleted pod stays `Terminating`, holding its
GPUs. `ControlPlane` runs this as its `pod-sim` component. For every pod bound to a node labelled
`devcluster.rackfit.io/simulated=true` it does what a kubelet would report, and nothing else:

- bound and not yet running -> `Running`, every container `running` and ready, `Ready=True`;
- deleted (deletionTimestamp set) -> phase `Failed` (containers `terminated`, as the kubelet
  reports a killed container), then the final delete with grace period 0. Finalizers (e.g. a Job
  pod's tracking finalizer) still hold the object until their controller removes them.

No container runs, no probe is evaluated, and no pod ever succeeds on its own: a Job's pods stay
`Running` until the Job is deleted or suspended.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from devcluster.fleet import SIMULATED_LABEL

log = logging.getLogger("rackfit.podsim")
_WATCH_SECONDS = 240


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(pod: dict, now: str) -> dict:
    """The status patch a kubelet would report once every container of `pod` started (pure)."""
    spec = pod["spec"]
    containers = [{
        "name": c["name"], "image": c["image"], "imageID": "", "containerID": f"sim://{pod['metadata']['uid']}/{c['name']}",
        "ready": True, "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}},
    } for c in spec.get("containers", [])]
    conditions = [{"type": t, "status": "True", "lastTransitionTime": now}
                  for t in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")]
    return {"status": {"phase": "Running", "startTime": now, "hostIP": "127.0.0.1",
                       "conditions": conditions, "containerStatuses": containers}}


def terminated_status(pod: dict, now: str) -> dict:
    """The status patch of a pod whose containers were killed on deletion (pure)."""
    containers = [{
        "name": c["name"], "image": c["image"], "imageID": "", "ready": False, "started": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": now}},
    } for c in pod["spec"].get("containers", [])]
    conditions = [{"type": t, "status": "False", "lastTransitionTime": now} for t in ("ContainersReady", "Ready")]
    return {"status": {"phase": "Failed", "conditions": conditions, "containerStatuses": containers}}


def action(pod: dict, simulated_nodes: set[str]) -> str | None:
    """What to do with `pod` (a dict as the API serves it): "run", "terminate" or None (pure)."""
    node = pod["spec"].get("nodeName")
    if not node or node not in simulated_nodes:
        return None
    phase = (pod.get("status") or {}).get("phase")
    if pod["metadata"].get("deletionTimestamp"):
        finalising = pod["metadata"].get("deletionGracePeriodSeconds") == 0 and phase in ("Succeeded", "Failed")
        return None if finalising else "terminate"  # finalising: only finalizers hold it now
    if phase == "Pending" or not phase:
        return "run"
    return None


class PodSimulator:
    """Handles pods in `LANES` threads, each pod always in the same one (its events stay in order):
    one thread at a time could not bring 20,000 pods up in minutes (bench/scale.py)."""

    LANES = 8

    def __init__(self, api_client):
        from kubernetes import client

        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.simulated: set[str] = set()
        self._nodes_listed = 0.0
        self._lanes = [ThreadPoolExecutor(1, thread_name_prefix=f"podsim-{i}") for i in range(self.LANES)]

    def submit(self, pod: dict) -> None:
        lane = self._lanes[hash(pod["metadata"]["uid"]) % self.LANES]
        lane.submit(self._handle_logged, pod)

    def _handle_logged(self, pod: dict) -> None:
        try:
            self.handle(pod)
        except Exception as e:  # one pod's failure must not stop the lane; the next event retries
            log.warning("%s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"].get("name"), e)

    def _refresh_nodes(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._nodes_listed < 2:
            return
        nodes = self.core.list_node(label_selector=f"{SIMULATED_LABEL}=true").items
        self.simulated = {n.metadata.name for n in nodes}
        self._nodes_listed = time.monotonic()

    def handle(self, pod: dict) -> None:
        from kubernetes.client.exceptions import ApiException

        node = pod["spec"].get("nodeName")
        if node and node not in self.simulated:
            self._refresh_nodes()
        what = action(pod, self.simulated)
        if what is None:
            return
        meta = pod["metadata"]
        name, ns = meta["name"], meta["namespace"]
        try:
            if what == "run":
                self.core.patch_namespaced_pod_status(name, ns, running_status(pod, _now()))
                log.info("%s/%s running on %s", ns, name, node)
            else:
                if (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    self.core.patch_namespaced_pod_status(name, ns, terminated_status(pod, _now()))
                self.core.delete_namespaced_pod(name, ns, grace_period_seconds=0,
                                                body={"preconditions": {"uid": meta["uid"]}, "gracePeriodSeconds": 0})
                log.info("%s/%s terminated on %s", ns, name, node)
        except ApiException as e:
            if e.status not in (404, 409, 422):  # gone, changed or already finalising: the next event decides
                raise

    def run(self, ready_file: Path | None = None) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        while True:
            try:
                self._refresh_nodes(force=True)
                listed = json.loads(self.core.list_pod_for_all_namespaces(
                    field_selector="spec.nodeName!=", _preload_content=False).data)
                for pod in listed["items"]:
                    self.submit(pod)
                if ready_file is not None:
                    ready_file.touch()
                    ready_file = None
                stream = watch.Watch().stream(self.core.list_pod_for_all_namespaces, field_selector="spec.nodeName!=",
                                              resource_version=listed["metadata"]["resourceVersion"],
                                              timeout_seconds=_WATCH_SECONDS)
                for event in stream:
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self.submit(event["raw_object"])
            except ApiException as e:
                if e.status != 410:  # 410: the watch expired; relist
                    log.warning("API error %s, relisting: %s", e.status, e.reason)
                    time.sleep(1)
            except Exception as e:  # the API server restarting, a dropped connection
                log.warning("relisting after %s: %s", type(e).__name__, e)
                time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster.podsim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--ready-file", type=Path, help="touched after the first full list of pods")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    from devcluster.controlplane import api_client

    with api_client(args.kubeconfig) as api:
        PodSimulator(api).run(args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
