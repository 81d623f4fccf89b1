"""Pod-creation latency added by the mutating webhook: N creations, C at a time, against the same
apiserver without the webhook and then with it, in one run. Target (issue 5): p99 overhead <= 20 ms.
Usage: python bench/webhook_latency.py [N] [C]. Needs the binaries of `make k8s-bin`."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

from rackfit.devcluster import binaries
from rackfit.devcluster.controlplane import ControlPlane, api_client
from rackfit.devcluster.fleet import apply_fleet, build_nodes
from rackfit.devcluster.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pods(core: client.CoreV1Api, ns: str, n: int, concurrency: int, labelled: bool) -> list[float]:
    def one(i: int) -> float:
        labels = {"rackfit.io/workload": "bench"} if labelled else {}
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name=f"p{i}", labels=labels),
                           spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="pause")]))
        t = time.perf_counter()
        core.create_namespaced_pod(ns, pod)
        return (time.perf_counter() - t) * 1000
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(n)))


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with ControlPlane() as plane, api_client(plane.kubeconfig) as api:
        core = client.CoreV1Api(api)
        apply_fleet(core, build_nodes())
        kubectl = str(binaries.bin_dir() / "kubectl")
        subprocess.run([kubectl, "--kubeconfig", str(plane.kubeconfig), "apply", "--server-side", "-f",
                        str(ROOT / "crds" / "rackfit.io_llmworkloads.yaml")], check=True, capture_output=True)
        results = {}
        for mode in ("without webhook", "with webhook"):
            ns = "bench-" + mode.split()[0]
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            # the operator runs in both modes (watching pods as always), so only the webhook differs
            env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "RACKFIT_METRICS_PORT": "0",
                   "RACKFIT_WEBHOOKS": "url" if mode == "with webhook" else "off",
                   "RACKFIT_WEBHOOK_PORT": str(_port()), "PYTHONPATH": str(ROOT / "operator")}
            proc = subprocess.Popen([sys.executable, "-m", "rackfit", "operator", "--standalone"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if mode == "with webhook":
                adm = client.AdmissionregistrationV1Api(api)
                wait_for(lambda: any(w.metadata.name == "rackfit.io"
                                     for w in adm.list_mutating_webhook_configuration().items), 60, "webhook")
            try:
                create_pods(core, ns, 20, concurrency, labelled=True)  # warm connections and caches
                core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
                run = ns + "-run"
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=run)))
                results[mode] = create_pods(core, run, n, concurrency, labelled=True)
            finally:
                proc.terminate()
                proc.wait(30)
    base, hooked = results["without webhook"], results["with webhook"]
    print(f"| pod creation ({n}, {concurrency} at a time) | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    for mode, s in results.items():
        print(f"| {mode} | {pct(s, 50):.1f} | {pct(s, 99):.1f} |")
    overhead = pct(hooked, 99) - pct(base, 99)
    print(f"p99 overhead {overhead:.1f} ms (target <= 20 ms): {'met' if overhead <= 20 else 'NOT MET'}; "
          f"p50 overhead {pct(hooked, 50) - pct(base, 50):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
