"""Time from creating N LLMWorkloads to all Placed, rackfit's operator against a kopf operator
whose handler does nothing (bench/noop_operator.py), on the same local control plane in one run.
Target (issue 4): rackfit at most 1.5x the no-op. Usage: python bench/operator_throughput.py [N]
Needs the binaries of `make k8s-bin`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client

from devcluster.controlplane import ControlPlane, api_client
from devcluster.fleet import apply_fleet, build_nodes

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "rackfit.io_llmworkloads.yaml"
PRESETS = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3", "llama-3.2-3b"]


def workload(i: int, namespace: str) -> dict:
    return {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload",
            "metadata": {"name": f"w{i:05d}", "namespace": namespace},
            "spec": {"model": {"preset": PRESETS[i % len(PRESETS)]}, "workload": "inference",
                     "inference": {"contextLength": 4096 * (1 + i % 4), "concurrency": 1 + i % 16}}}


def placed_count(api: client.CustomObjectsApi, namespace: str) -> int:
    items = api.list_namespaced_custom_object("rackfit.io", "v1alpha1", namespace, "llmworkloads")["items"]
    return sum(1 for o in items for c in (o.get("status") or {}).get("conditions") or []
               if c["type"] == "Placed" and c["status"] == "True")


def run(kind: str, n: int, kubeconfig: Path, api: client.ApiClient) -> float:
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-{kind}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "RACKFIT_METRICS_PORT": "0",
           "PYTHONPATH": f"{ROOT / 'operator'}:{ROOT}"}
    # both cluster-wide: rackfit reads Nodes and Pods, which a namespaced kopf operator cannot watch
    cmd = ([sys.executable, "-m", "rackfit", "operator", "--standalone"] if kind == "rackfit" else
           [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
            str(ROOT / "bench" / "noop_operator.py")])
    log = open(kubeconfig.parent / f"{kind}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)  # let the operator start watching before the clock starts
        start = time.perf_counter()
        for i in range(n):
            custom.create_namespaced_custom_object("rackfit.io", "v1alpha1", ns, "llmworkloads", workload(i, ns))
        created = time.perf_counter() - start
        deadline = start + 1200
        done, shown = 0, 0.0
        while done < n and time.perf_counter() < deadline:
            time.sleep(0.5)
            done = placed_count(custom, ns)
            if time.perf_counter() - shown > 10:  # progress every 10 s
                shown = time.perf_counter()
                print(f"  {kind}: {done}/{n} placed after {shown - start:.0f} s", file=sys.stderr)
        if done < n:
            raise SystemExit(f"{kind}: only {done}/{n} placed in 1200 s; see {log.name}")
        elapsed = time.perf_counter() - start
        print(f"  {kind}: created in {created:.1f} s", file=sys.stderr)
        return elapsed
    finally:
        proc.terminate()
        proc.wait(30)
        # the next operator is cluster-wide too: leave it nothing of this run to resume
        custom.delete_collection_namespaced_custom_object("rackfit.io", "v1alpha1", ns, "llmworkloads")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with ControlPlane() as plane, api_client(plane.kubeconfig) as api:
        apply_fleet(client.CoreV1Api(api), build_nodes())
        plane.apply_crds(CRD, "llmworkloads.rackfit.io")
        noop = run("noop", n, plane.kubeconfig, api)
        rackfit = run("rackfit", n, plane.kubeconfig, api)
    ratio = rackfit / noop
    print(f"| operator | {n} LLMWorkloads to Placed (s) | per workload (ms) |")
    print("|---|---:|---:|")
    print(f"| kopf, handler does nothing | {noop:.1f} | {noop / n * 1000:.1f} |")
    print(f"| rackfit | {rackfit:.1f} | {rackfit / n * 1000:.1f} |")
    print(f"ratio {ratio:.2f} (target <= 1.5): {'met' if ratio <= 1.5 else 'NOT MET'}")
    print(json.dumps({"n": n, "noop_s": noop, "rackfit_s": rackfit, "ratio": ratio}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
