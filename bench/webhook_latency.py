"""Pod-creation latency added by the mutating webhook, on one apiserver with the operator serving
its webhooks: N pods labelled `rackfit.io/workload` (they go through the webhook) and N unlabelled
pods (the objectSelector keeps them out of it), interleaved, C creations at a time. Interleaving
puts both groups under the same load, so the difference is the webhook's.
Target (issue 5): p99 overhead <= 20 ms. Usage: python bench/webhook_latency.py [N] [C]
Needs the binaries of `make k8s-bin`."""

from __future__ import annotations

import json
import os
import ssl
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

from devcluster import binaries
from devcluster.controlplane import ControlPlane, api_client, free_port
from devcluster.fleet import apply_fleet, build_nodes
from devcluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


def create_pods(core: client.CoreV1Api, ns: str, n: int, concurrency: int) -> dict[bool, list[float]]:
    """Even-numbered pods labelled, odd ones not; latency in ms by labelled."""
    def one(i: int) -> tuple[bool, float]:
        labelled = i % 2 == 0
        labels = {"rackfit.io/workload": "bench"} if labelled else {}
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name=f"p{i}", labels=labels),
                           spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="pause")]))
        t = time.perf_counter()
        core.create_namespaced_pod(ns, pod)
        return labelled, (time.perf_counter() - t) * 1000
    out: dict[bool, list[float]] = {True: [], False: []}
    with ThreadPoolExecutor(concurrency) as pool:
        for labelled, ms in pool.map(one, range(2 * n)):
            out[labelled].append(ms)
    return out


def direct(port: int, n: int = 300) -> list[float]:
    """The webhook's own service time: AdmissionReviews posted one at a time on one keep-alive
    connection, without the apiserver."""
    import http.client
    review = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
        "name": "p", "namespace": "bench", "userInfo": {"username": "bench"}, "dryRun": False,
        "object": {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "p", "namespace": "bench", "labels": {"rackfit.io/workload": "bench"}},
                   "spec": {"containers": [{"name": "c", "image": "pause"}]}}}})
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl._create_unverified_context())
    out = []
    for i in range(n + 20):
        t = time.perf_counter()
        conn.request("POST", "/mutate-pod", review, {"Content-Type": "application/json"})
        conn.getresponse().read()
        if i >= 20:  # after warm-up
            out.append((time.perf_counter() - t) * 1000)
    return out


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with ControlPlane() as plane, api_client(plane.kubeconfig) as api:
        core = client.CoreV1Api(api)
        apply_fleet(core, build_nodes())
        subprocess.run([str(binaries.bin_dir() / "kubectl"), "--kubeconfig", str(plane.kubeconfig), "apply",
                        "--server-side", "-f", str(ROOT / "crds" / "rackfit.io_llmworkloads.yaml")],
                       check=True, capture_output=True)
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "RACKFIT_METRICS_PORT": "0",
               "RACKFIT_WEBHOOKS": "url", "RACKFIT_WEBHOOK_PORT": str(port), "PYTHONPATH": str(ROOT / "operator")}
        proc = subprocess.Popen([sys.executable, "-m", "rackfit", "operator", "--standalone"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            adm = client.AdmissionregistrationV1Api(api)
            wait_for(lambda: any(w.metadata.name == "rackfit.io"
                                 for w in adm.list_mutating_webhook_configuration().items),
                     60, "webhook registered")
            for ns in ("bench-warmup", "bench"):
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            create_pods(core, "bench-warmup", 20, concurrency)  # connections, caches, the webhook's TLS
            samples = create_pods(core, "bench", n, concurrency)
            alone = direct(port)
        finally:
            proc.terminate()
            proc.wait(30)
    hooked, plain = samples[True], samples[False]
    print(f"| pod creation ({n} + {n} interleaved, {concurrency} at a time) | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    print(f"| unlabelled (no webhook call) | {pct(plain, 50):.1f} | {pct(plain, 99):.1f} |")
    print(f"| labelled (mutating webhook) | {pct(hooked, 50):.1f} | {pct(hooked, 99):.1f} |")
    print(f"| the webhook alone (sequential AdmissionReviews, keep-alive) | {pct(alone, 50):.1f} | "
          f"{pct(alone, 99):.1f} |")
    overhead = pct(hooked, 99) - pct(plain, 99)
    print(f"p99 overhead {overhead:.1f} ms (target <= 20 ms): {'met' if overhead <= 20 else 'NOT MET'}; "
          f"p50 overhead {pct(hooked, 50) - pct(plain, 50):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
