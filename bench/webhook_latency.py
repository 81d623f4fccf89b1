"""Pod-creation latency added by the mutating webhook, on one apiserver with the operator serving
its webhooks: N pods labelled `rackfit.io/workload` (they go through the webhook) and N unlabelled
pods (the objectSelector keeps them out of it), interleaved, C creations at a time. Interleaving
puts both groups under the same load, so the difference is the webhook's.
Target (issue 5): p99 overhead <= 20 ms. Usage: python bench/webhook_latency.py [N] [C] [--real-node]
Needs the binaries of `make k8s-bin`.

Process mode (default): the operator is a local process serving its webhooks in url mode on loopback.
--real-node: the operator as the chart runs it, two replicas of the image (`make image`) on a real
node (root; harness/devcluster/realnode.py), the webhooks called through the chart's Service
(kube-proxy) with the chart's certificate."""

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


def direct(port: int, n: int = 300, host: str = "127.0.0.1") -> list[float]:
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
    conn = http.client.HTTPSConnection(host, port, context=ssl._create_unverified_context())
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


def in_pods(n: int, concurrency: int) -> tuple[dict[bool, list[float]], list[float]]:
    """The chart installed on a real node; the same measurement through its Service."""
    import yaml

    from devcluster import realnode

    engine = realnode.engine()
    image = subprocess.run([str(ROOT / "tools" / "image" / "build.sh")], check=True, capture_output=True,
                           text=True).stdout.split()[-1]
    with ControlPlane(node_ip=realnode.host_ip()) as plane, api_client(plane.kubeconfig) as api:
        core = client.CoreV1Api(api)
        apply_fleet(core, build_nodes())
        node = realnode.RealNode(plane)
        try:
            node.start(engine)
            node.load_image(engine, image)
            repo, _, tag = image.partition(":")
            values = plane.data_dir / "values.yaml"
            values.write_text(yaml.safe_dump({
                "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
                "operator": {"nodeSelector": {"kubernetes.io/hostname": node.name},
                             "tolerations": [realnode.TOLERATION]}}))
            env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig), "HELM_CACHE_HOME": str(plane.data_dir / "helm")}
            subprocess.run([str(binaries.bin_dir() / "helm"), "install", "rackfit", str(ROOT / "charts" / "rackfit"),
                            "-n", "rackfit", "--create-namespace", "-f", str(values), "--wait", "--timeout", "180s"],
                           check=True, capture_output=True, env=env)
            for ns in ("bench-warmup", "bench"):
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            create_pods(core, "bench-warmup", 20, concurrency)
            samples = create_pods(core, "bench", n, concurrency)
            pod_ip = core.list_namespaced_pod("rackfit").items[0].status.pod_ip
            alone = direct(9443, host=pod_ip)
            subprocess.run([str(binaries.bin_dir() / "helm"), "uninstall", "rackfit", "-n", "rackfit", "--wait"],
                           capture_output=True, env=env)
        finally:
            node.stop()
    return samples, alone


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 500
    concurrency = int(args[1]) if len(args) > 1 else 20
    if "--real-node" in sys.argv:
        samples, alone = in_pods(n, concurrency)
        report(samples, alone, n, concurrency, "operator in 2 pods on a real node, webhooks through the Service")
        return 0
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
    report(samples, alone, n, concurrency, "operator as a local process, webhooks in url mode")
    return 0


def report(samples: dict[bool, list[float]], alone: list[float], n: int, concurrency: int, mode: str) -> None:
    hooked, plain = samples[True], samples[False]
    print(f"mode: {mode}")
    print(f"| pod creation ({n} + {n} interleaved, {concurrency} at a time) | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    print(f"| unlabelled (no webhook call) | {pct(plain, 50):.1f} | {pct(plain, 99):.1f} |")
    print(f"| labelled (mutating webhook) | {pct(hooked, 50):.1f} | {pct(hooked, 99):.1f} |")
    print(f"| the webhook alone (sequential AdmissionReviews, keep-alive) | {pct(alone, 50):.1f} | "
          f"{pct(alone, 99):.1f} |")
    overhead = pct(hooked, 99) - pct(plain, 99)
    print(f"p99 overhead {overhead:.1f} ms (target <= 20 ms): {'met' if overhead <= 20 else 'NOT MET'}; "
          f"p50 overhead {pct(hooked, 50) - pct(plain, 50):.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
