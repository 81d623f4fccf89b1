"""Prometheus metrics of the operator (prometheus-client), served on RACKFIT_METRICS_PORT. Built once at
start (`Metrics(registry)`, held by the operator context), so tests make their own registry.

Label values are bounded: namespace and name of LLMWorkloads, instance type and NVLink domain, and the
pods of placed workloads (rackfit_pod_workload_info, one series per pod).

The series that join what a workload really uses to what rackfit estimated (docs/observed.md) carry a
`workload` label, not `name`, so that PromQL joins them with rackfit_pod_workload_info on (namespace,
workload) and with dcgm-exporter's and the engines' series on (namespace, pod).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

_WL = ["namespace", "name"]
_DOMAIN = ["instance_type", "domain"]
_OBS = ["namespace", "workload"]


class _PodWorkloads(Collector):
    """rackfit_pod_workload_info{namespace,pod,workload} 1 for each bound pod carrying a workload's label,
    from the pod watch (`Metrics.pod_workload`); read when Prometheus scrapes."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], str] = {}

    def describe(self):
        return list(self._families({}))

    def collect(self):
        return self._families(dict(self.pods))  # a copy: the watch changes it from the event loop

    @staticmethod
    def _families(pods: dict):
        info = GaugeMetricFamily("rackfit_pod_workload_info", "1 for each bound pod of an LLMWorkload: joins "
                                 "dcgm-exporter's and the serving engines' per-pod series to workloads",
                                 labels=["namespace", "pod", "workload"])
        for (ns, pod), workload in pods.items():
            info.add_metric([ns, pod, workload], 1)
        yield info


class _Domains(Collector):
    """Per-domain gauges read from the ledger when Prometheus scrapes: O(fleet) per scrape, nothing
    per reconcile."""

    def __init__(self, usage: Callable[[], dict]) -> None:
        self.usage = usage

    def describe(self):
        return list(self._families({}))

    def collect(self):
        return self._families(self.usage())

    @staticmethod
    def _families(usage: dict):
        alloc = GaugeMetricFamily("rackfit_domain_gpus_allocatable",
                                  "Allocatable GPUs of schedulable nodes per NVLink domain", labels=_DOMAIN)
        taken = GaugeMetricFamily("rackfit_domain_gpus_requested", "GPUs per NVLink domain taken by bound pods "
                                  "(anyone's) and held by placements whose pods are not bound yet", labels=_DOMAIN)
        for (itype, domain), (a, used) in usage.items():
            alloc.add_metric([itype, domain.value], a)
            taken.add_metric([itype, domain.value], used)
        yield alloc
        yield taken


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


class Metrics:
    """The operator's metrics in one registry; `usage` is the ledger's per-domain usage (`Inventory.usage`)."""

    def __init__(self, registry: CollectorRegistry, usage: Callable[[], dict] = dict) -> None:
        self.registry = registry
        g = {"registry": registry}
        self.memory_required = Gauge("rackfit_workload_memory_required_bytes",
                                     "Estimated GPU memory per GPU of the workload at its peak", _WL, **g)
        self.memory_capacity = Gauge("rackfit_workload_memory_capacity_bytes", "Usable GPU memory per GPU of the "
                                     "workload's placement, or of what its target asks for", _WL, **g)
        self.oversubscribed = Gauge("rackfit_workload_oversubscribed", "1 when the workload needs more than it is "
                                    "given", _WL, **g)
        self.fits = Gauge("rackfit_workload_fits", "1 when some allowed instance type can hold the workload", _WL, **g)
        self.placed = Gauge("rackfit_workload_placed", "1 when capacity was found and the target patched", _WL, **g)
        self.reconcile_duration = Histogram("rackfit_reconcile_duration_seconds",
                                            "Time to estimate, plan and patch one workload",
                                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), **g)
        self.reconcile_errors = Counter("rackfit_reconcile_errors_total", "Reconciles that ended in an error", **g)
        self.decision_cycle = Histogram("rackfit_decision_cycle_workloads", "Workloads decided in one scheduling "
                                        "cycle (under one hold of the ledger's lock)",
                                        buckets=(1, 2, 4, 8, 16, 32, 64, 128), **g)
        self.webhook_duration = Histogram("rackfit_webhook_duration_seconds", "The pod webhook's own service "
                                          "time: from the request kopf hands it to the patch it returns",
                                          buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005,
                                                   0.01, 0.025, 0.05, 0.1), **g)
        self.domains = _Domains(usage)
        registry.register(self.domains)
        # estimate beside observed (issue 21; rackfit.observed.compare.EstimateFigures)
        self.estimate_bytes = Gauge("rackfit_workload_estimate_bytes", "Estimated peak GPU memory per GPU "
                                    "(status.estimate.totalBytes); compare: framebuffer (training, engine "
                                    "transformers) or kv_cache (preallocating engines: compare the KV cache)",
                                    [*_OBS, "compare"], **g)
        self.estimate_kv_tokens = Gauge("rackfit_workload_estimate_kv_tokens", "KV cache tokens per replica "
                                        "rackfit estimated the serving engine allocates (status.estimate."
                                        "kvCacheTokens)", _OBS, **g)
        self.required_kv_tokens = Gauge("rackfit_workload_required_kv_tokens", "KV cache tokens per replica the "
                                        "spec needs: concurrency per replica x contextLength", _OBS, **g)
        self.observed_kv_tokens = Gauge("rackfit_workload_observed_kv_tokens", "KV cache tokens per replica the "
                                        "engine allocated, as the operator last read them from Prometheus (vLLM "
                                        "publishes them as labels, which PromQL cannot compare)",
                                        [*_OBS, "source"], **g)
        self.observed_queries = Counter("rackfit_observed_queries_total", "Batched Prometheus queries of what "
                                        "workloads use, by outcome (ok, error)", ["outcome"], **g)
        self._observed_source: dict[tuple[str, str], str] = {}
        self.pods = _PodWorkloads()
        registry.register(self.pods)

    @property
    def workload_gauges(self) -> tuple[Gauge, ...]:
        return (self.memory_required, self.memory_capacity, self.oversubscribed, self.fits, self.placed)

    def record(self, namespace: str, name: str, m: dict[str, float]) -> None:
        """A reconcile's outcome (`Decision.metrics`)."""
        self.fits.labels(namespace, name).set(m.get("fits", 0))
        self.placed.labels(namespace, name).set(m.get("placed", 0))
        self.oversubscribed.labels(namespace, name).set(m.get("oversubscribed", 0))
        if "required" in m:
            self.memory_required.labels(namespace, name).set(m["required"])
            self.memory_capacity.labels(namespace, name).set(m["capacity"])

    def forget_workload(self, namespace: str, name: str) -> None:
        for g in self.workload_gauges:
            try:
                g.remove(namespace, name)
            except KeyError:
                pass
        self.set_estimate(namespace, name, None)
        self.set_observed_kv_tokens(namespace, name, None)

    def set_estimate(self, namespace: str, name: str, figures) -> None:
        """A workload's `EstimateFigures` (None: no estimate, or gone)."""
        for compare in ("framebuffer", "kv_cache"):
            if figures is None or figures.compare != compare:
                _remove(self.estimate_bytes, namespace, name, compare)
        if figures is not None:
            self.estimate_bytes.labels(namespace, name, figures.compare).set(figures.estimate_bytes)
        for gauge, value in ((self.estimate_kv_tokens, figures and figures.estimate_kv_tokens),
                             # only for the engines that publish their KV cache (vLLM, SGLang): the alerts
                             # compare it, and RackfitObservedMissing would fire forever for TensorRT-LLM
                             (self.required_kv_tokens, figures and figures.engine in ("vllm", "sglang")
                              and figures.required_kv_tokens)):
            if value:
                gauge.labels(namespace, name).set(value)
            else:
                _remove(gauge, namespace, name)

    def set_observed_kv_tokens(self, namespace: str, name: str, tokens: int | None, source: str = "") -> None:
        old = self._observed_source.get((namespace, name))
        if old is not None and (tokens is None or old != source):
            _remove(self.observed_kv_tokens, namespace, name, old)
            del self._observed_source[(namespace, name)]
        if tokens is not None:
            self.observed_kv_tokens.labels(namespace, name, source).set(tokens)
            self._observed_source[(namespace, name)] = source

    def pod_workload(self, namespace: str, pod: str, workload: str | None) -> None:
        """A bound pod of `workload`, or (None) a pod that is gone, finished or not bound."""
        if workload:
            self.pods.pods[(namespace, pod)] = workload
        else:
            self.pods.pods.pop((namespace, pod), None)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
