"""The operator at fleet scale, on the local control plane with simulated GPU nodes.

For each fleet size: N GPU nodes (72% GB200 NVL72 racks, 20% HGX H100, 8% HGX H200), P pods per node
already running (one in four nodes fully used by a GPU pod, the rest daemon-like pods without GPUs),
then the operator starts (webhooks on) and a burst of W LLMWorkloads arrives, each with its target
whose pod templates carry the workload label (gated until placed): a Deployment for the models that
fit one node, a LeaderWorkerSet for the 405B that spans a rack. Measured:

- ready: operator start -> a workload created before it is Placed (every object indexed);
- created: first creation -> the load generator done (8 threads creating each LLMWorkload and its
  target, through the validating webhook): settled can be no faster;
- settled: first creation -> every workload decided (status written for its generation: Placed, or
  why not), and per workload;
- reconcile latency p50/p99 (the operator's histogram), operator RSS peak and CPU seconds;
- API requests per workload the operator makes (the apiserver's request counters, operator verbs);
- with --restart: the operator killed halfway through the burst and started again: placements made
  before the kill unchanged, no Deployment patched twice (generation 2), no domain over capacity;
- the mutating webhook's pod-creation latency with every pod of the fleet in the operator's watch.

With --kueue, no rackfit operator: the same fleet and burst shapes admitted by Kueue's topology-aware
scheduling (`ControlPlane(kueue=True)`; `run_size_kueue`, docs/scale.md "Beside Kueue"): first creation
-> every Kueue Workload decided (Admitted, or Pending after Kueue tried it), then its admitted pods
Running; exit status 1 when they do not run, or run over a node's GPUs or split over racks.

Usage: python bench/scale.py [--sizes 64,1000,5000] [--pods-per-node 4] [--workloads 1000] [--restart] [--kueue]
Needs the binaries of `make k8s-bin`. Takes about 40 minutes for the three default sizes on 2 cores (docs/scale.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

from devcluster import binaries
from devcluster.addons import KUEUE_VERSION, TOPOLOGY_LEVELS, kueue_topology
from devcluster.controlplane import ControlPlane, api_client, free_port
from devcluster.fleet import apply_fleet, build_nodes
from devcluster.waiting import WaitTimeout, wait_for
from rackfit.catalog import load_catalog
from rackfit.names import CLIQUE_LABEL, HOSTNAME_LABEL, INSTANCE_TYPE_LABEL, KUEUE_QUEUE_LABEL
from rackfit.planner import plan
from rackfit.spec import parse_spec
from webhook_latency import create_pods, pct

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "rackfit.io_llmworkloads.yaml"
GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"
NS = "bench-scale"
MIX = [  # (share of the burst, target kind, spec): small jobs most, some whole nodes, some multi-node racks
    (5, "Deployment", {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                       "placement": {"instanceTypes": ["gd-8xh100ib-i128", "gd-8xh200ib-i128"]}}),
    (3, "Deployment", {"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
                       "inference": {"contextLength": 32768, "concurrency": 32},
                       "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}),
    (2, "LeaderWorkerSet", {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                            "inference": {"contextLength": 16384, "concurrency": 16},
                            "placement": {"instanceTypes": ["gb200-4x"]}}),
]
LWS = ("leaderworkerset.x-k8s.io", "v1", "leaderworkersets")
# operator requests: its own reads and patches (controllers use watches and PUT/update)
# (pods DELETE is left out: in this burst of Deployments the ReplicaSet controller makes them all)
OPERATOR_VERBS = {("llmworkloads", "", "PATCH"), ("llmworkloads", "status", "PATCH"), ("deployments", "", "GET"),
                  ("deployments", "", "PATCH"), ("leaderworkersets", "", "GET"), ("leaderworkersets", "", "PATCH"),
                  ("pods", "", "GET"), ("pods", "", "PATCH")}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fleet(n: int) -> dict[str, int]:
    gb200 = max(18, round(n * 0.72 / 18) * 18)
    h100 = max(1, round(n * 0.20))
    return {"gb200-4x": gb200, "gd-8xh100ib-i128": h100, "gd-8xh200ib-i128": max(1, n - gb200 - h100)}


def pods_for(nodes: list[dict], per_node: int) -> list[dict]:
    out = []
    for i, node in enumerate(nodes):
        name, gpus = node["metadata"]["name"], int(node["status"]["allocatable"]["nvidia.com/gpu"])
        for j in range(per_node):
            container = {"name": "c", "image": "registry.k8s.io/pause:3.10"}
            if j == 0 and i % 4 == 0:
                container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
            out.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-p{j}"},
                        "spec": {"nodeName": name, "containers": [container]}})
    return out


def workload_docs(i: int) -> list[dict]:
    weights = [w for w, _, _ in MIX]
    _, kind, spec = MIX[next(k for k in range(len(MIX)) if i % sum(weights) < sum(weights[:k + 1]))]
    name = f"w{i:05d}"
    labels = {"app": name, "rackfit.io/workload": name}
    template = {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}}
    workload = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload", "metadata": {"name": name, "namespace": NS},
                "spec": {**spec, "target": {"kind": kind, "name": name}}}
    if kind == "LeaderWorkerSet":  # one group: rackfit sets its size to the planned nodes
        meta = {"name": name, "namespace": NS}
        return [workload, {"apiVersion": f"{LWS[0]}/{LWS[1]}", "kind": kind, "metadata": meta,
                           "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 1, "workerTemplate": template}}}]
    nodes = plan(parse_spec(spec), load_catalog()).chosen.placement.nodes
    return [workload, {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": NS},
                       "spec": {"replicas": nodes, "selector": {"matchLabels": {"app": name}}, "template": template}}]


def create_all(api: client.ApiClient, docs: list[dict], workers: int = 8) -> None:
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)

    def create(d: dict) -> None:
        ns = d["metadata"].get("namespace", NS)
        if d["kind"] == "Pod":
            core.create_namespaced_pod(ns, d)
        elif d["kind"] == "Deployment":
            apps.create_namespaced_deployment(ns, d)
        elif d["kind"] == "LeaderWorkerSet":
            custom.create_namespaced_custom_object(*LWS[:2], ns, LWS[2], d)
        else:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, d)

    def one(d: dict) -> None:
        # as a client would: retried while the validating webhook is away (an operator restart)
        for attempt in range(60):
            try:
                return create(d)
            except client.ApiException as e:
                if e.status == 409:
                    return
                if e.status < 500 or attempt == 59:
                    raise
                time.sleep(1)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, docs))


def statuses(custom: client.CustomObjectsApi) -> dict[str, dict]:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"]
    return {o["metadata"]["name"]: o.get("status") or {} for o in items}


def placed_reason(status: dict) -> str | None:
    placed = next((c for c in status.get("conditions") or [] if c["type"] == "Placed"), None)
    return None if placed is None else ("Placed" if placed["status"] == "True" else placed["reason"])


def settled(status: dict) -> bool:
    """Decided: the operator wrote its verdict for the spec (placed, waiting, or why it cannot be)."""
    return bool(status.get("observedGeneration")) and placed_reason(status) is not None


def apiserver_requests(kubeconfig: Path) -> Counter:
    """(resource, subresource, verb) -> requests served so far, from the apiserver's own counters."""
    data = subprocess.run([str(binaries.bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), "get", "--raw",
                           "/metrics"], check=True, capture_output=True, text=True).stdout
    out: Counter = Counter()
    for line in data.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.rindex("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        out[(labels.get("resource", ""), labels.get("subresource", ""), labels.get("verb", ""))] += \
            float(line.rsplit(" ", 1)[1])
    return out


def usage_of(pid: int) -> tuple[float, float]:
    """(RSS peak MiB, CPU seconds) of process `pid`, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return hwm / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Proc:
    """The operator process, with its RSS peak and CPU time from /proc."""

    def __init__(self, kubeconfig: Path, log: Path, metrics_port: int, webhook_port: int):
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "RACKFIT_METRICS_PORT": str(metrics_port),
                    "RACKFIT_WEBHOOKS": "url", "RACKFIT_WEBHOOK_PORT": str(webhook_port),
                    "RACKFIT_REPLAN_SECONDS": "15", "PYTHONPATH": f"{ROOT / 'operator'}"}
        self.log, self.metrics_port, self.proc, self.cpu = log, metrics_port, None, 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "rackfit", "operator", "--standalone"], env=self.env,
                                     stdout=open(self.log, "a"), stderr=subprocess.STDOUT)

    def usage(self) -> tuple[float, float]:
        """(RSS peak MiB, CPU seconds) of the running process."""
        return usage_of(self.proc.pid)

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.cpu += self.usage()[1]
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(60)

    def quantiles(self, histogram: str) -> tuple[float, float]:
        """p50 and p99 of one of the operator's histograms (the upper bound of the bucket holding each)."""
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        buckets = []
        for line in text.splitlines():
            if line.startswith(f"{histogram}_bucket{{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        total = buckets[-1][1] if buckets else 0

        def q(p: float) -> float:  # the upper bound of the bucket holding the quantile
            return next((le for le, c in buckets if c >= p * total), float("nan"))
        return q(0.5), q(0.99)


def make_nodes(core: client.CoreV1Api, n: int) -> list[dict]:
    """The simulated fleet of `n` GPU nodes, created."""
    t = time.monotonic()
    nodes = build_nodes(fleet(n))
    apply_fleet(core, nodes, workers=16)
    say(f"[{n}] {len(nodes)} nodes in {time.monotonic() - t:.0f}s")
    return nodes


def run_pods(api: client.ApiClient, core: client.CoreV1Api, n: int, nodes: list[dict], per_node: int) -> list[dict]:
    """`per_node` pods on each node (`pods_for`), in the default namespace; returns once all are Running."""
    t = time.monotonic()
    pods = pods_for(nodes, per_node)
    for start in range(0, len(pods), 2000):
        create_all(api, [{**p, "metadata": {**p["metadata"], "namespace": "default"}}
                         for p in pods[start:start + 2000]], workers=16)
        say(f"[{n}] {start + len(pods[start:start + 2000])}/{len(pods)} pods created")

    def running() -> int | None:
        listed = json.loads(core.list_namespaced_pod("default", field_selector="status.phase=Running",
                                                     _preload_content=False).data)
        return len(listed["items"]) if len(listed["items"]) >= len(pods) else None
    wait_for(running, 1800, f"{len(pods)} pods Running", interval=5)
    say(f"[{n}] {len(pods)} pods running in {time.monotonic() - t:.0f}s")
    return pods


def burst_ticks(job, first: float, row: dict):
    """The time, each second while a burst is created and decided; the load generator's failure is
    raised, and when it finished is recorded as `created_s` (within a second)."""
    while True:
        time.sleep(1)
        if job.done() and job.exception():
            raise job.exception()
        now = time.monotonic()
        if job.done() and "created_s" not in row:
            row["created_s"] = now - first
        yield now


def run_size(n: int, per_node: int, burst: int, restart: bool, webhook_pods: int) -> dict:
    row: dict = {"nodes": n}
    with ControlPlane() as plane, api_client(plane.kubeconfig, pool_size=32) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        nodes = make_nodes(core, n)
        plane.apply_crds(CRD, "llmworkloads.rackfit.io")
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        pods = run_pods(api, core, n, nodes, per_node)
        row["pods"] = len(pods)

        create_all(api, workload_docs(burst))  # the sentinel, created before the operator starts
        op = Proc(plane.kubeconfig, plane.log_dir / "operator.log", free_port(), free_port())
        started = time.monotonic()
        op.start()
        wait_for(lambda: settled(statuses(custom).get(f"w{burst:05d}", {})), 600, "operator ready", interval=0.5)
        row["ready_s"] = time.monotonic() - started
        say(f"[{n}] operator ready in {row['ready_s']:.1f}s")

        before = apiserver_requests(plane.kubeconfig)
        docs = [d for i in range(burst) for d in workload_docs(i)]
        created: dict[str, float] = {}
        first = time.monotonic()
        done: dict[str, float] = {}
        killed_at, kept = None, {}
        with ThreadPoolExecutor(1) as creator:
            job = creator.submit(create_all, api, docs)
            ticks = burst_ticks(job, first, row)
            while len(done) < burst:
                now = next(ticks)
                current = statuses(custom)
                for name in current:
                    created.setdefault(name, now)
                for name, s in current.items():
                    if name not in done and name != f"w{burst:05d}" and settled(s):
                        done[name] = now
                if restart and killed_at is None and len(done) >= burst // 2:
                    kept = {k: current[k].get("placement") for k in done if current[k].get("placement")}
                    op.stop(kill=True)
                    killed_at = time.monotonic()
                    op.start()
                    say(f"[{n}] operator killed and restarted at {len(done)}/{burst} settled")
                if now - first > 1800:
                    raise SystemExit(f"only {len(done)}/{burst} settled in 1800 s; see {op.log}")
                if int(now - first) % 15 == 0:
                    say(f"[{n}] {len(done)}/{burst} settled after {now - first:.0f}s")
            job.result()
        row["settled_s"] = time.monotonic() - first
        row.setdefault("created_s", row["settled_s"])
        row["per_workload_ms"] = row["settled_s"] / burst * 1000
        lat = sorted(done[k] - created[k] for k in done)
        row["settle_p50_s"], row["settle_p99_s"] = pct(lat, 50), pct(lat, 99)
        row["reconcile_p50_s"], row["reconcile_p99_s"] = op.quantiles("rackfit_reconcile_duration_seconds")
        after = apiserver_requests(plane.kubeconfig)
        delta = {k: after[k] - before[k] for k in OPERATOR_VERBS}
        row["requests_per_workload"] = sum(delta.values()) / burst
        row["requests"] = {f"{r}{'/' + s if s else ''} {v}": round(c / burst, 2) for (r, s, v), c in delta.items() if c}
        final = statuses(custom)
        row["verdicts"] = dict(Counter(placed_reason(s) for s in final.values()))
        row["placed"] = row["verdicts"].get("Placed", 0)
        row["waiting"] = row["verdicts"].get("WaitingForCapacity", 0)
        if restart:
            moved = [k for k, p in kept.items() if final[k].get("placement") != p]
            apps = client.AppsV1Api(api)
            twice = [d.metadata.name for d in apps.list_namespaced_deployment(NS).items
                     if d.metadata.generation > 2]
            row["restart"] = {"moved": len(moved), "patched_twice": len(twice)}
        # no domain over capacity: reservations by domain against allocatable
        alloc: Counter = Counter()
        for node in nodes:
            labels = node["metadata"]["labels"]
            alloc[labels.get("nvidia.com/gpu.clique") or node["metadata"]["name"]] += \
                int(node["status"]["allocatable"]["nvidia.com/gpu"])
        held: Counter = Counter()
        for s in final.values():
            p = s.get("placement")
            if p:
                held[p["nvlinkDomain"].split("=", 1)[1]] += p["totalGPUs"]
        row["domains_over"] = sum(1 for d, g in held.items() if g > alloc[d])
        rss, cpu = op.usage()
        row["rss_mib"], row["cpu_s"] = rss, op.cpu + cpu
        if webhook_pods:
            time.sleep(15)  # after the burst's rollouts: the webhook's cost, not the burst's
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="bench-webhook")))
            samples = create_pods(core, "bench-webhook", webhook_pods, 20)
            row["webhook_p50_ms"] = pct(samples[True], 50) - pct(samples[False], 50)
            row["webhook_p99_ms"] = pct(samples[True], 99) - pct(samples[False], 99)
            row["creation_p50_ms"], row["creation_p99_ms"] = pct(samples[False], 50), pct(samples[False], 99)
            # the webhook's own service time, from the operator's server-side histogram
            row["webhook_service_p99_ms"] = op.quantiles("rackfit_webhook_duration_seconds")[1] * 1000
        op.stop()
    return row

# --- --kueue: the same fleet and burst admitted by Kueue's topology-aware scheduling, without rackfit ------
KUEUE = ("kueue.x-k8s.io", "v1beta2")
QUEUE = "gpu"
REQUIRED_TOPOLOGY = "kueue.x-k8s.io/podset-required-topology"


def kueue_queues(nodes: list[dict], pods: list[dict]) -> list[dict]:
    """Kueue's side of the fleet: a Topology per node shape (NVL72: zone, clique, host; HGX: zone, host, as
    TAS leaves out a node lacking a level's label), a ResourceFlavor per instance type on it, and a
    ClusterQueue whose nvidia.com/gpu quota for each flavor is that type's free GPUs (pure)."""
    free: Counter = Counter()
    racked: set[str] = set()
    for node in nodes:
        labels = node["metadata"]["labels"]
        free[labels[INSTANCE_TYPE_LABEL]] += int(node["status"]["allocatable"]["nvidia.com/gpu"])
        if CLIQUE_LABEL in labels:
            racked.add(labels[INSTANCE_TYPE_LABEL])
    by_node = {node["metadata"]["name"]: node["metadata"]["labels"][INSTANCE_TYPE_LABEL] for node in nodes}
    for pod in pods:
        for c in pod["spec"]["containers"]:
            free[by_node[pod["spec"]["nodeName"]]] -= int((c.get("resources") or {}).get("limits", {}).get(
                "nvidia.com/gpu", 0))
    hgx = {"apiVersion": f"{KUEUE[0]}/{KUEUE[1]}", "kind": "Topology", "metadata": {"name": "hgx"},
           "spec": {"levels": [{"nodeLabel": label} for label in TOPOLOGY_LEVELS if label != CLIQUE_LABEL]}}
    flavors = [{"apiVersion": f"{KUEUE[0]}/{KUEUE[1]}", "kind": "ResourceFlavor", "metadata": {"name": itype},
                "spec": {"nodeLabels": {INSTANCE_TYPE_LABEL: itype},
                         "topologyName": "nvl72" if itype in racked else "hgx"}} for itype in sorted(free)]
    queue = {"apiVersion": f"{KUEUE[0]}/{KUEUE[1]}", "kind": "ClusterQueue", "metadata": {"name": QUEUE},
             "spec": {"namespaceSelector": {}, "resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
                 {"name": itype, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": free[itype]}]}
                 for itype in sorted(free)]}]}}
    return [kueue_topology("nvl72"), hgx, *flavors, queue,
            {"apiVersion": f"{KUEUE[0]}/{KUEUE[1]}", "kind": "LocalQueue", "metadata": {"name": QUEUE, "namespace": NS},
             "spec": {"clusterQueue": QUEUE}}]


def kueue_docs(i: int) -> list[dict]:
    """Workload i of the burst for Kueue alone: the same target as `workload_docs` (a Deployment for a model
    on one node, a LeaderWorkerSet for the 405B), sized by the same plan, in the LocalQueue, asking TAS for
    one clique (GB200) or one host (HGX); no LLMWorkload. A Deployment's pods are admitted one by one by
    Kueue's pod integration, a LeaderWorkerSet's group as one Workload by its own integration."""
    weights = [w for w, _, _ in MIX]
    _, kind, spec = MIX[next(k for k in range(len(MIX)) if i % sum(weights) < sum(weights[:k + 1]))]
    name = f"w{i:05d}"
    chosen = plan(parse_spec(spec), load_catalog()).chosen.placement
    types = spec["placement"]["instanceTypes"]
    racked = load_catalog().get(chosen.instance_type).nodes_per_domain > 1
    template = {"metadata": {"labels": {"app": name, KUEUE_QUEUE_LABEL: QUEUE},
                             "annotations": {REQUIRED_TOPOLOGY: CLIQUE_LABEL if racked else HOSTNAME_LABEL}},
                "spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": types}]}]}}},
                         "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": {
                             "limits": {"nvidia.com/gpu": str(chosen.gpus_per_node)}}}]}}
    meta = {"name": name, "namespace": NS, "labels": {KUEUE_QUEUE_LABEL: QUEUE}}
    if kind == "LeaderWorkerSet":  # the queue on the LeaderWorkerSet only: Kueue labels its pods with their group
        del template["metadata"]["labels"][KUEUE_QUEUE_LABEL]  # (and leaves a pod that names a queue alone)
        return [{"apiVersion": f"{LWS[0]}/{LWS[1]}", "kind": kind, "metadata": meta,
                 "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": chosen.nodes, "workerTemplate": template}}}]
    return [{"apiVersion": "apps/v1", "kind": kind, "metadata": meta,
             "spec": {"replicas": chosen.nodes, "selector": {"matchLabels": {"app": name}}, "template": template}}]


def kueue_workloads(custom: client.CustomObjectsApi) -> dict[str, tuple[str, dict]]:
    """Kueue Workload name -> (the target it belongs to, its conditions by type)."""
    listed = json.loads(custom.list_namespaced_custom_object(*KUEUE, NS, "workloads", _preload_content=False).data)
    out = {}
    for w in listed["items"]:
        owner = next((o["name"] for o in w["metadata"].get("ownerReferences") or []), "")
        target = owner.split("-", 1)[0]  # a Deployment's pod w00012-<hash>-<id>, or the LeaderWorkerSet
        out[w["metadata"]["name"]] = (target, {c["type"]: c for c in (w.get("status") or {}).get("conditions") or []})
    return out


def kueue_verdict(conditions: dict) -> str | None:
    """Admitted, Pending (Kueue tried and left it waiting: QuotaReserved=False), or None (not tried yet)."""
    if conditions.get("Admitted", {}).get("status") == "True":
        return "Admitted"
    reserved = conditions.get("QuotaReserved")
    return None if reserved is None else ("QuotaReserved" if reserved["status"] == "True" else "Pending")


def run_size_kueue(n: int, per_node: int, burst: int) -> dict:
    """The same fleet and burst, admitted by Kueue (ControlPlane(kueue=True)); no rackfit operator."""
    row: dict = {"nodes": n}
    with ControlPlane(kueue=True) as plane, api_client(plane.kubeconfig, pool_size=32) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        pid = json.loads((plane.data_dir / "state.json").read_text())["pids"]["kueue-controller"]
        nodes = make_nodes(core, n)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
        pods = run_pods(api, core, n, nodes, per_node)
        row["pods"] = len(pods)

        # ready: the queues applied -> the sentinel (created first) admitted
        cpu_before = usage_of(pid)[1]
        started = time.monotonic()
        queues = kueue_queues(nodes, pods)
        subprocess.run([str(binaries.bin_dir() / "kubectl"), "--kubeconfig", str(plane.kubeconfig), "apply",
                        "--server-side", "-f", "-"], input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                       "items": queues}),
                       check=True, capture_output=True, text=True)
        row["quota"] = {f["name"]: f["resources"][0]["nominalQuota"] for q in queues if q["kind"] == "ClusterQueue"
                        for f in q["spec"]["resourceGroups"][0]["flavors"]}
        sentinel = f"w{burst:05d}"
        create_all(api, kueue_docs(burst))
        wait_for(lambda: any(t == sentinel and kueue_verdict(c) == "Admitted"
                             for t, c in kueue_workloads(custom).values()), 600, "Kueue ready", interval=0.5)
        row["ready_s"] = time.monotonic() - started
        say(f"[{n}] Kueue ready (sentinel admitted) in {row['ready_s']:.1f}s")

        before = apiserver_requests(plane.kubeconfig)
        docs = [d for i in range(burst) for d in kueue_docs(i)]
        seen: dict[str, float] = {}
        done: dict[str, float] = {}
        first, first_wall = time.monotonic(), time.time()
        with ThreadPoolExecutor(1) as creator:
            job = creator.submit(create_all, api, docs)
            ticks = burst_ticks(job, first, row)
            while len(done) < burst:
                now = next(ticks)
                current = {k: v for k, v in kueue_workloads(custom).items() if v[0] != sentinel}
                for name, (_, conditions) in current.items():
                    seen.setdefault(name, now)
                    if name not in done and kueue_verdict(conditions):
                        done[name] = now
                if now - first > 1800:
                    raise SystemExit(f"only {len(done)}/{burst} Kueue Workloads decided in 1800 s; see "
                                     f"{plane.log_dir / 'kueue-controller.log'}")
                if int(now - first) % 15 == 0:
                    say(f"[{n}] {len(done)}/{burst} Kueue Workloads decided after {now - first:.0f}s")
            job.result()
        row["settled_s"] = time.monotonic() - first
        row.setdefault("created_s", row["settled_s"])
        lat = sorted(done[k] - seen[k] for k in done)
        row["settle_p50_s"], row["settle_p99_s"] = pct(lat, 50), pct(lat, 99)
        row["last_seen_s"] = max(seen.values()) - first  # the last Workload made (a Deployment's after its pod)
        made = [dt.datetime.fromisoformat(p["metadata"]["creationTimestamp"]).timestamp() for p in json.loads(
            core.list_namespaced_pod(NS, _preload_content=False).data)["items"]]
        row["last_pod_s"] = max(made) - first_wall  # the last pod made (to the second): its controller's pace
        final = {k: v for k, v in kueue_workloads(custom).items() if v[0] != sentinel}
        row["verdicts"] = dict(Counter(kueue_verdict(c) for _, c in final.values()))
        row["admitted"] = sum(1 for _, c in final.values() if kueue_verdict(c) in ("Admitted", "QuotaReserved"))
        row["pending"] = row["verdicts"].get("Pending", 0)
        after = apiserver_requests(plane.kubeconfig)
        delta = {k: after[k] - before[k] for k in after if k[0] == "workloads" and after[k] > before[k]}
        row.update(kueue_bound(core, custom, nodes, first))
        row["workload_requests"] = {f"{r}{'/' + s if s else ''} {v}": round(c / burst, 2)
                                    for (r, s, v), c in delta.items()}
        rss, cpu = usage_of(pid)
        row["rss_mib"], row["cpu_s"] = rss, cpu - cpu_before
    return row


def kueue_bound(core: client.CoreV1Api, custom: client.CustomObjectsApi, nodes: list[dict], first: float) -> dict:
    """After the measurement: the admitted Workloads' pods bound and Running (seconds since the first creation,
    None if not within 600 s), nodes holding more GPUs than they have, LeaderWorkerSet groups split over racks."""
    listed = custom.list_namespaced_custom_object(*KUEUE, NS, "workloads")["items"]
    expected = sum(ps["count"] for w in listed if kueue_verdict(
        {c["type"]: c for c in (w.get("status") or {}).get("conditions") or []}) == "Admitted"
        for ps in w["spec"]["podSets"])

    def running() -> list | None:
        pods = json.loads(core.list_namespaced_pod(NS, field_selector="status.phase=Running",
                                                   _preload_content=False).data)["items"]
        return pods if len(pods) >= expected else None
    out: dict = {"bound_s": None}
    try:
        wait_for(running, 600, f"{expected} admitted pods Running", interval=2)
        out["bound_s"] = time.monotonic() - first
    except WaitTimeout:
        pass
    held: Counter = Counter()
    racks: dict[str, set] = {}
    labels = {node["metadata"]["name"]: node["metadata"]["labels"] for node in nodes}
    for pod in json.loads(core.list_pod_for_all_namespaces(_preload_content=False).data)["items"]:
        where = pod["spec"].get("nodeName")
        if not where or pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        held[where] += sum(int((c.get("resources") or {}).get("limits", {}).get("nvidia.com/gpu", 0))
                           for c in pod["spec"]["containers"])
        group = (pod["metadata"].get("labels") or {}).get("leaderworkerset.sigs.k8s.io/name")
        if group:
            racks.setdefault(group, set()).add(labels[where].get(CLIQUE_LABEL))
    out["nodes_over"] = sum(1 for node in nodes if held[node["metadata"]["name"]] >
                            int(node["status"]["allocatable"]["nvidia.com/gpu"]))
    out["groups_split"] = sum(1 for r in racks.values() if len(r) > 1)
    return out


def print_kueue(rows: list[dict], burst: int) -> None:
    print(f"| admitted by | nodes | pods | ready (s) | {burst} created (s) | {burst} decided (s) | workloads a second "
          "| per workload (ms) | decide p50/p99 (s) | admitted / pending | admitted pods Running (s) | RSS peak (MiB) "
          "| CPU (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| Kueue {KUEUE_VERSION} TAS | {r['nodes']} | {r['pods']} | {r['ready_s']:.1f} | {r['created_s']:.0f} "
              f"| {r['settled_s']:.1f} | {burst / r['settled_s']:.1f} | {r['settled_s'] / burst * 1000:.1f} "
              f"| {r['settle_p50_s']:.1f} / {r['settle_p99_s']:.1f} | {r['admitted']} / {r['pending']} "
              f"| {'not within 600' if r['bound_s'] is None else format(r['bound_s'], '.0f')} "
              f"| {r['rss_mib']:.0f} | {r['cpu_s']:.0f} |")
    for r in rows:
        print(f"{r['nodes']} nodes (Kueue): verdicts {r['verdicts']}; quota {r['quota']}; "
              f"the last pod made after {r['last_pod_s']:.0f} s, the last Workload after {r['last_seen_s']:.0f} s; "
              f"Workload API requests per workload {r['workload_requests']}; "
              f"nodes over capacity {r['nodes_over']}; LeaderWorkerSet groups split over racks {r['groups_split']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="64,1000,5000", help="fleet sizes in nodes (default 64,1000,5000)")
    parser.add_argument("--pods-per-node", type=int, default=4)
    parser.add_argument("--workloads", type=int, default=1000)
    parser.add_argument("--restart", action="store_true", help="kill and restart the operator mid-burst")
    parser.add_argument("--webhook-pods", type=int, default=200, help="labelled + unlabelled pods timed (0: skip)")
    parser.add_argument("--kueue", action="store_true",
                        help="the same fleet and burst admitted by Kueue's TAS alone (no rackfit operator)")
    args = parser.parse_args()
    rows = []
    if args.kueue:
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(run_size_kueue(n, args.pods_per_node, args.workloads))
            say(json.dumps(rows[-1]))
        print_kueue(rows, args.workloads)
        # a Kueue row only counts if what Kueue admitted runs where TAS put it
        return int(any(r["bound_s"] is None or r["nodes_over"] or r["groups_split"] for r in rows))
    for n in (int(s) for s in args.sizes.split(",")):
        rows.append(run_size(n, args.pods_per_node, args.workloads, args.restart, args.webhook_pods))
        say(json.dumps(rows[-1]))
    base = rows[0]["per_workload_ms"]
    print(f"| nodes | pods | ready (s) | {args.workloads} created (s) | {args.workloads} settled (s) "
          "| per workload (ms) "
          f"| vs {rows[0]['nodes']} nodes "
          "| settle p50/p99 (s) | reconcile p50/p99 (s) | placed / waiting | RSS peak (MiB) | CPU (s) "
          "| API requests per workload | pod creation without / overhead of the webhook p50/p99 (ms) "
          "| webhook service p99 (ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---|---:|")
    for r in rows:
        hook = (f"{r['creation_p50_ms']:.1f}/{r['creation_p99_ms']:.1f} / {r['webhook_p50_ms']:.1f}/"
                f"{r['webhook_p99_ms']:.1f}" if "webhook_p50_ms" in r else "-")
        service = f"{r['webhook_service_p99_ms']:.2f}" if "webhook_service_p99_ms" in r else "-"
        print(f"| {r['nodes']} | {r['pods']} | {r['ready_s']:.1f} | {r['created_s']:.0f} | {r['settled_s']:.1f} "
              f"| {r['per_workload_ms']:.1f} "
              f"| {r['per_workload_ms'] / base:.2f}x | {r['settle_p50_s']:.1f} / {r['settle_p99_s']:.1f} "
              f"| {r['reconcile_p50_s']} / {r['reconcile_p99_s']} | {r['placed']} / {r['waiting']} "
              f"| {r['rss_mib']:.0f} | {r['cpu_s']:.0f} | {r['requests_per_workload']:.1f} | {hook} | {service} |")
    for r in rows:
        print(f"{r['nodes']} nodes: verdicts {r['verdicts']}; requests per workload {r['requests']}; "
              f"domains over capacity {r['domains_over']}"
              + (f"; restart: {r['restart']}" if "restart" in r else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
