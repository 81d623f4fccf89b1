"""Prometheus metrics of the operator (prometheus-client), served on RACKFIT_METRICS_PORT. Built once at
start (`Metrics(registry)`, held by the operator context), so tests make their own registry.

Label values are bounded: namespace and name of LLMWorkloads, instance type and NVLink domain.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

_WL = ["namespace", "name"]
_DOMAIN = ["instance_type", "domain"]


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
        self.domains = _Domains(usage)
        registry.register(self.domains)

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

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
