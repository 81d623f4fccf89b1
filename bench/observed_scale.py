"""The observed loop at scale (issue 21): N placed workloads, the operator without and with
`observed.prometheusURL`, on the local control plane, one fresh control plane per run.

"1,000 placed workloads: the operator's queries per interval stay at one, and the reconcile pace does
not change." Each run: simulated HGX H100 nodes, a sentinel workload created before the operator starts
(ready = it is Placed), then a burst of N LLMWorkloads (3 in 4 vLLM servers, 1 in 4 LoRA training jobs
of qwen2.5-7b, one GPU each), each with its Deployment whose pods carry the workload label (gated until
placed, webhooks on, as bench/scale.py runs the operator). Measured per run: first creation -> all N
Placed, each workload's time to Placed (p50/p99), the operator's reconcile histogram (p50/p99, bucket
bounds), and, with observed on, the time until every workload has `status.observed`.

Prometheus is a stand-in served by this bench (`FakePrometheus`), in both runs, so that the only
difference between them is the operator's observed loop:

- its scraper, every interval as Prometheus would scrape: the operator's own /metrics
  (`rackfit_pod_workload_info`), and, for every bound pod of a placed workload, the text dcgm-exporter
  and vLLM would serve for it, rendered by tests/real/exporters.py (the same names, labels and units,
  from their source: DCGM_FI_DEV_FB_{FREE,USED,RESERVED} per GPU with the pod mapping, vLLM's
  vllm:cache_config_info and vllm:kv_cache_usage_perc), parsed back as Prometheus ingests it. Figures
  that hold: a vLLM pod's framebuffer at 92% of the GPU (preallocated) and its KV cache at 98% of the
  estimate; a training pod's peak at 85% of its estimate.
- its /api/v1/query counts every query and answers exactly the operator's batched query
  (rackfit.observed.promql.batched_query for the run's window) over those series, as Prometheus would
  evaluate it (the join on rackfit_pod_workload_info, max/min by workload, the `figure` tag); any
  other expression is refused and counted, and fails the bench.

Fails (exit 1) when a run cannot finish (not all Placed, or not all observed, in time), when the
operator sends any query but the batched one, or more than one query per interval (docs/observed.md:
"one query for all workloads every observed.intervalSeconds").

Usage: python bench/observed_scale.py [N] [--interval 5] [--window 1m] [--timeout 1200]
Needs the binaries of `make k8s-bin`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devcluster.controlplane import ControlPlane, api_client, free_port
from devcluster.fleet import apply_fleet, build_nodes
from rackfit.observed.promql import FB_USED, VLLM, VLLM_LABELS, batched_query
from scale import Proc, apiserver_requests, create_all
from webhook_latency import pct

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "rackfit.io_llmworkloads.yaml"
GROUP, VERSION, PLURAL = "rackfit.io", "v1alpha1", "llmworkloads"
INSTANCE_TYPE = "gd-8xh100ib-i128"
H100 = ("NVIDIA H100 80GB HBM3", 81559)  # NVML's name and framebuffer (MiB) of that type's GPU, as tests/real
MIB = 1024 * 1024
SENTINEL = "ready"


def _load_exporters():
    """tests/real/exporters.py: dcgm-exporter's and vLLM's series, as the real-node tests serve them."""
    spec = importlib.util.spec_from_file_location("rackfit_real_exporters", ROOT / "tests" / "real" / "exporters.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


exporters = _load_exporters()


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the workloads -------------------------------------------------------------------------------
def workload_docs(name: str, i: int, namespace: str) -> list[dict]:
    """An LLMWorkload and its Deployment (one replica; its pods labelled, so gated until placed)."""
    spec: dict = {"model": {"preset": "qwen2.5-7b"}, "precision": "bf16",
                  "placement": {"instanceTypes": [INSTANCE_TYPE]}, "target": {"kind": "Deployment", "name": name}}
    if i % 4 == 3:
        spec |= {"workload": "training", "training": {"framework": "transformers", "method": "lora",
                                                      "microBatchSize": 4, "sequenceLength": 4096,
                                                      "activationCheckpointing": "full"}}
    else:
        spec |= {"workload": "inference", "inference": {"engine": "vllm", "contextLength": 4096 * (1 + i % 3),
                                                        "concurrency": 1 + i % 8}}
    labels = {"app": name, "rackfit.io/workload": name}
    return [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "LLMWorkload",
             "metadata": {"name": name, "namespace": namespace}, "spec": spec},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                      "template": {"metadata": {"labels": labels},
                                   "spec": {"containers": [{"name": "main",
                                                            "image": "registry.k8s.io/pause:3.10"}]}}}}]


def listed(custom: client.CustomObjectsApi, namespace: str) -> list[dict]:
    """Every LLMWorkload of the namespace, from the API server's watch cache (resourceVersion 0: no etcd read)."""
    return json.loads(custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, resource_version="0",
                                                           _preload_content=False).data)["items"]


def is_placed(obj: dict) -> bool:
    return any(c["type"] == "Placed" and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


# --- the Prometheus stand-in -----------------------------------------------------------------------
def _series(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Exposition text -> (name, labels, value), as Prometheus ingests a scrape (honorLabels)."""
    return [(s.name, dict(s.labels), s.value) for fam in text_string_to_metric_families(text) for s in fam.samples]


class FakePrometheus:
    """The Prometheus HTTP API's instant query, for the operator's batched query only, over series
    scraped every `interval` (see the module docstring). Counts every query it gets."""

    def __init__(self, api: client.ApiClient, namespace: str, metrics_url: str, window: str, interval: float):
        self.core, self.custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        self.namespace, self.metrics_url, self.interval = namespace, metrics_url, interval
        self.expected = batched_query(window)
        self.lock = threading.Lock()
        self.series: list[tuple[str, dict[str, str], float]] = []
        self.query_times: list[float] = []      # time.monotonic() of each batched query
        self.other: Counter = Counter()          # any other expression, by text
        self.scrapes = self.scrape_errors = 0
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # the scrape: the operator, and what dcgm-exporter and vLLM would serve for the placed pods
    def scrape(self) -> None:
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        info = [s for s in _series(text) if s[0] == "rackfit_pod_workload_info"]
        pods = json.loads(self.core.list_namespaced_pod(self.namespace, label_selector="rackfit.io/workload",
                                                        resource_version="0", _preload_content=False).data)["items"]
        workloads = {o["metadata"]["name"]: o for o in listed(self.custom, self.namespace)}
        ex = exporters.Exporters(host="127.0.0.1")
        for pod in pods:
            meta, spec = pod["metadata"], pod["spec"]
            w = workloads.get(meta["labels"]["rackfit.io/workload"])
            est = ((w or {}).get("status") or {}).get("estimate") or {}
            if not spec.get("nodeName") or meta.get("deletionTimestamp") or not est.get("totalBytes"):
                continue  # not running yet: no exporter has its GPU
            container = spec["containers"][0]
            gpus = int(((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 1))
            serving = w["spec"]["workload"] == "inference"
            used = int(0.92 * H100[1]) if serving else int(0.85 * int(est["totalBytes"]) / MIB)
            ex.gpus += [exporters.GPU(self.namespace, meta["name"], container["name"], spec["nodeName"], g, H100[0],
                                      H100[1], used) for g in range(gpus)]
            if serving and est.get("kvCacheTokens"):
                tokens = int(est["kvCacheTokens"]) * 98 // 100 // 16 * 16  # whole blocks of 16
                ex.engines.append(exporters.Engine(self.namespace, meta["name"], "Qwen/Qwen2.5-7B-Instruct", tokens,
                                                   int(w["spec"]["inference"]["contextLength"])))
        series = info + _series(ex.dcgm()) + _series(ex.vllm())
        with self.lock:
            self.series = series
            self.scrapes += 1

    def _scraper(self) -> None:
        while not self._stop.is_set():
            try:
                self.scrape()
            except Exception as e:  # the operator not up yet, an API hiccup: as a failed scrape
                self.scrape_errors += 1
                say(f"  prometheus stand-in: scrape failed: {type(e).__name__}: {e}")
            self._stop.wait(self.interval)

    # the query, evaluated as Prometheus would over the last scrape
    def evaluate(self, now: float) -> list[dict]:
        with self.lock:
            series = list(self.series)
        info: dict[tuple[str, str], str] = {}  # INFO: max by (namespace, pod, workload) (rackfit_pod_workload_info)
        for name, labels, _ in series:
            if name == "rackfit_pod_workload_info":
                info[(labels["namespace"], labels["pod"])] = labels["workload"]
        fb: dict[tuple[str, str], float] = {}
        vllm: set[tuple] = set()
        for name, labels, value in series:
            workload = info.get((labels.get("namespace"), labels.get("pod")))
            if workload is None:
                continue  # `* on (namespace, pod) group_left (workload)` drops series without a match
            key = (labels["namespace"], workload)
            if name == "DCGM_FI_DEV_FB_USED":  # max_over_time of a constant series is its value
                fb[key] = max(fb.get(key, -math.inf), value)
            elif name == "vllm:cache_config_info":
                vllm.add((*key, *(labels.get(k, "") for k in VLLM_LABELS)))
            # no SGLang server in this fleet: its part of the `or` is empty
        out = [{"metric": {"namespace": ns, "workload": wl, "figure": FB_USED}, "value": [now, str(v)]}
               for (ns, wl), v in fb.items()]
        for ns, wl, *rest in vllm:  # labels with an empty value are no labels in Prometheus
            labels = {k: v for k, v in zip(VLLM_LABELS, rest, strict=True) if v}
            out.append({"metric": {"namespace": ns, "workload": wl, **labels, "figure": VLLM}, "value": [now, "1"]})
        return out

    def start(self) -> FakePrometheus:
        prom = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, query: str | None) -> None:
                if query == prom.expected:
                    prom.query_times.append(time.monotonic())
                    body = {"status": "success", "data": {"resultType": "vector",
                                                          "result": prom.evaluate(time.time())}}
                    code = 200
                else:
                    prom.other[query] += 1
                    body = {"status": "error", "errorType": "bad_data",
                            "error": "this stand-in answers the operator's batched query only"}
                    code = 400
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path != "/api/v1/query":
                    self.send_error(404)
                    return
                self._answer(urllib.parse.parse_qs(url.query).get("query", [None])[0])

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                self._answer(form.get("query", [None])[0])

            def log_message(self, *_):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="prometheus", daemon=True).start()
        return self

    def start_scraping(self) -> None:
        """Once the operator serves its /metrics (before that a scrape would only fail)."""
        threading.Thread(target=self._scraper, name="scraper", daemon=True).start()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def operator_counter(metrics_port: int, name: str) -> dict[str, float]:
    """A labelled counter of the operator's /metrics, by its first label value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return {next(iter(labels.values()), ""): v for n, labels, v in _series(text) if n == f"{name}_total"}


# --- one run ---------------------------------------------------------------------------------------
def run(n: int, observed: bool, args: argparse.Namespace) -> dict:
    kind = "with observed" if observed else "without observed"
    ns = "bench-observed" if observed else "bench-plain"
    row: dict = {"run": kind, "n": n}
    with ControlPlane() as plane, api_client(plane.kubeconfig, pool_size=32) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        apply_fleet(core, build_nodes({INSTANCE_TYPE: math.ceil((n + 1) * 1.1 / 8) + 1}), workers=16)
        plane.apply_crds(CRD, "llmworkloads.rackfit.io")
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        create_all(api, workload_docs(SENTINEL, 0, ns))

        metrics_port = free_port()
        prom = FakePrometheus(api, ns, f"http://127.0.0.1:{metrics_port}/metrics", args.window, args.interval).start()
        op = Proc(plane.kubeconfig, plane.log_dir / "operator.log", metrics_port, free_port())
        if observed:
            op.env |= {"RACKFIT_PROMETHEUS_URL": prom.url, "RACKFIT_OBSERVED_SECONDS": str(args.interval),
                       "RACKFIT_OBSERVED_WINDOW": args.window}
        try:
            started = time.monotonic()
            op.start()
            deadline = started + args.timeout

            progress: dict[str, int] = {}  # what the last look saw, and the looks the API server did not answer

            def looked(done) -> bool:
                try:
                    return done()
                except client.ApiException as e:  # an API server too busy to answer one list: look again
                    if e.status < 500:
                        raise
                    progress["api_errors"] = progress.get("api_errors", 0) + 1
                    return False

            def poll(what: str, done) -> None:
                shown = time.monotonic()
                while not looked(done):
                    if op.proc.poll() is not None:
                        raise SystemExit(f"{kind}: the operator exited ({op.proc.returncode}); see {op.log}")
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{kind}: {what} not reached in {args.timeout:.0f} s; see {op.log}")
                    if time.monotonic() - shown > 15:
                        shown = time.monotonic()
                        say(f"  {kind}: waiting for {what} ({shown - started:.0f} s; {progress})")
                    time.sleep(2)  # each look lists every LLMWorkload: not too often

            poll("the sentinel Placed", lambda: any(is_placed(o) for o in listed(custom, ns)
                                                  if o["metadata"]["name"] == SENTINEL))
            row["ready_s"] = time.monotonic() - started
            prom.start_scraping()
            say(f"  {kind}: operator ready in {row['ready_s']:.1f} s")

            docs = [d for i in range(n) for d in workload_docs(f"w{i:05d}", i, ns)]
            before = apiserver_requests(plane.kubeconfig)
            first = time.monotonic()
            creator = threading.Thread(target=create_all, args=(api, docs), daemon=True)
            creator.start()
            seen: dict[str, float] = {}
            placed: dict[str, float] = {}

            def all_placed() -> bool:
                now = time.monotonic()
                for o in listed(custom, ns):
                    name = o["metadata"]["name"]
                    if name == SENTINEL:
                        continue
                    seen.setdefault(name, now)
                    if name not in placed and is_placed(o):
                        placed[name] = now
                progress.update(created=len(seen), placed=len(placed))
                return len(placed) >= n
            poll(f"all {n} Placed", all_placed)
            creator.join()
            row["placed_s"] = time.monotonic() - first
            lat = sorted(placed[k] - seen[k] for k in placed)
            row["placed_p50_s"], row["placed_p99_s"] = (pct(lat, 50), pct(lat, 99)) if len(lat) > 1 else (lat[0],) * 2
            say(f"  {kind}: {n} Placed in {row['placed_s']:.1f} s")

            if observed:
                def all_observed() -> bool:
                    items = [o for o in listed(custom, ns) if o["metadata"]["name"] != SENTINEL]
                    row["observed"] = sum(1 for o in items if (o.get("status") or {}).get("observed"))
                    progress.update(observed=row["observed"])
                    row["holds"] = dict(Counter(
                        next((c["status"] for c in (o.get("status") or {}).get("conditions") or []
                              if c["type"] == "EstimateHolds"), "none") for o in items))
                    return row["observed"] >= n
                poll(f"status.observed on all {n}", all_observed)
                row["observed_s"] = time.monotonic() - first
                say(f"  {kind}: status.observed on {row['observed']} in {row['observed_s']:.1f} s")
            else:
                # as long as the other run watches for status.observed: as many intervals of the operator at rest
                time.sleep(args.interval * 3)
            ended = time.monotonic()
            after = apiserver_requests(plane.kubeconfig)
            # the operator's writes of LLMWorkload statuses (the only writer of that subresource here)
            status = ("llmworkloads", "status", "PATCH")
            row["status_patches"] = after[status] - before[status]
            row["reconcile_p50_s"], row["reconcile_p99_s"] = op.quantiles("rackfit_reconcile_duration_seconds")
            row["operator_queries"] = operator_counter(metrics_port, "rackfit_observed_queries")
            row["rss_mib"], cpu = op.usage()
            row["cpu_s"] = op.cpu + cpu
            row["api_errors"] = progress.get("api_errors", 0)
        finally:
            op.stop()
            prom.stop()
    times = prom.query_times
    row["queries"] = len(times)
    row["other_queries"] = sum(prom.other.values())
    row["other"] = {q: c for q, c in prom.other.items()}
    row["run_s"] = ended - started
    # the intervals begun since the first query (the operator sends it once started), else since it started
    row["intervals"] = (1 + math.floor((ended - times[0]) / args.interval) if times
                        else math.ceil(row["run_s"] / args.interval))
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    row["min_gap_s"] = min(gaps) if gaps else None
    # the most queries in any window of one interval
    row["max_per_interval"] = max((sum(1 for u in times if t <= u < t + args.interval) for t in times), default=0)
    row["scrapes"], row["scrape_errors"] = prom.scrapes, prom.scrape_errors
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=1000, help="placed workloads (default 1000)")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="observed.intervalSeconds, and the stand-in's scrape interval (default 5)")
    parser.add_argument("--window", default="1m", help="observed.window (default 1m)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds each run may take (default 1200)")
    args = parser.parse_args()

    rows = [run(args.n, False, args), run(args.n, True, args)]
    for r in rows:
        say(json.dumps(r))
    plain, obs = rows
    ratio = obs["placed_s"] / plain["placed_s"]
    per_interval = obs["queries"] / obs["intervals"]
    failures = []
    if plain["queries"] or plain["other_queries"]:
        failures.append(f"the operator without observed.prometheusURL sent {plain['queries'] + plain['other_queries']} "
                        "queries")
    if obs["other_queries"]:
        failures.append(f"{obs['other_queries']} queries other than the batched one: {obs['other']}")
    if obs["max_per_interval"] > 1 or obs["queries"] > obs["intervals"]:
        failures.append(f"more than one query per interval: {obs['queries']} in {obs['intervals']} intervals, "
                        f"up to {obs['max_per_interval']} within one")
    if not obs["queries"]:
        failures.append("the operator never queried Prometheus")

    def rec(r: dict) -> str:  # bucket bounds; past the last one, the histogram says only "more"
        return " / ".join(f"{v:g}" if math.isfinite(v) else "over the last bucket"
                          for v in (r["reconcile_p50_s"], r["reconcile_p99_s"]))
    print(f"| operator | N | ready (s) | N Placed (s) | time to Placed p50 / p99 (s) | reconcile p50 / p99 (s) "
          f"| Prometheus queries / intervals ({args.interval:g} s) | most in one interval | with status.observed "
          "| EstimateHolds | status writes per workload | CPU (s) | RSS peak (MiB) |")
    print("|---|---:|---:|---:|---|---|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        holds = ", ".join(f"{k} {v}" for k, v in sorted(r.get("holds", {}).items())) or "-"
        queries = f"{r['queries']} / {r['intervals']} = {r['queries'] / r['intervals']:.2f}"
        print(f"| {r['run']} | {r['n']} | {r['ready_s']:.1f} | {r['placed_s']:.1f} "
              f"| {r['placed_p50_s']:.1f} / {r['placed_p99_s']:.1f} | {rec(r)} | {queries} "
              f"| {r['max_per_interval']} | {r.get('observed', '-')} | {holds} | {r['status_patches'] / r['n']:.1f} "
              f"| {r['cpu_s']:.0f} "
              f"| {r['rss_mib']:.0f} |")
    print(f"time to all Placed with / without observed: {ratio:.2f}; queries per interval with observed: "
          f"{per_interval:.2f} (design: one batched query per interval for all workloads, docs/observed.md); "
          f"smallest gap between two queries {obs['min_gap_s'] or float('nan'):.2f} s; "
          f"the operator's own count: {obs['operator_queries']}; stand-in scrapes {obs['scrapes']} "
          f"({obs['scrape_errors']} failed); lists the API server did not answer (5xx) without / with: "
          f"{plain['api_errors']} / {obs['api_errors']}")
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
