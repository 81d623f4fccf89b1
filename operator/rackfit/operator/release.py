"""`python -m rackfit.operator.release`: let go of every LLMWorkload before the operator is uninstalled.

The chart runs this as a Helm pre-delete hook (templates/uninstall-hook.yaml), with the operator's
ServiceAccount. kopf puts its finalizer on every LLMWorkload so that a deletion waits for the
operator's delete handler; once `helm uninstall` has removed the operator, nothing would remove that
finalizer, and deleting a workload, a namespace holding one, or the kept CRD would wait forever.

It first scales the operator's Deployment to zero and waits until its pods are gone (a running
replica would put the finalizer back), then removes kopf's finalizer, and only kopf's, from every
LLMWorkload. Targets are left as placed: their running pods stay where they are, and deleting a
workload afterwards no longer reverts its target (the `rackfit.io/applied` annotation stays as the
record of what rackfit added). The webhook configuration skips metadata-only updates, so these
patches are not refused by a validating webhook whose operator is already stopped.
"""

from __future__ import annotations

import argparse
import sys
import time

import kopf

from rackfit.operator import kube

KOPF_FINALIZER = kopf.OperatorSettings().persistence.finalizer


def stop_operator(namespace: str, deployment: str, selector: str, timeout: float) -> None:
    kube.scale_deployment(namespace, deployment, 0)
    deadline = time.monotonic() + timeout
    while pods := kube.pod_names(namespace, selector):
        if time.monotonic() > deadline:
            raise TimeoutError(f"operator pods still there after {timeout:g}s: {', '.join(pods)}")
        time.sleep(1)


def release_all() -> int:
    """Remove kopf's finalizer from every LLMWorkload; returns how many had it."""
    released = 0
    for _ in range(5):  # a workload changed between list and patch (409) is read again
        pending = [w for w in kube.list_workloads() if KOPF_FINALIZER in (w["metadata"].get("finalizers") or [])]
        if not pending:
            return released
        for w in pending:
            meta = w["metadata"]
            keep = [f for f in meta["finalizers"] if f != KOPF_FINALIZER]
            try:
                kube.set_finalizers(meta["namespace"], meta["name"], keep, meta["resourceVersion"])
                released += 1
            except kube.TransientError:
                continue
    raise RuntimeError("LLMWorkloads kept changing: kopf's finalizer is still on some")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rackfit.operator.release", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", required=True, help="the operator's namespace")
    parser.add_argument("--deployment", required=True, help="the operator's Deployment")
    parser.add_argument("--selector", required=True, help="label selector of the operator's pods")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the pods to go")
    args = parser.parse_args(argv)
    stop_operator(args.namespace, args.deployment, args.selector, args.timeout)
    print(f"operator {args.namespace}/{args.deployment} scaled to 0", flush=True)
    print(f"released {release_all()} LLMWorkloads (removed {KOPF_FINALIZER})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
