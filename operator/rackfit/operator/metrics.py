"""Prometheus metrics of the operator (prometheus-client), served on RACKFIT_METRICS_PORT.

Label values are bounded: namespace and name of LLMWorkloads, instance type and NVLink domain.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_WL = ["namespace", "name"]
memory_required = Gauge("rackfit_workload_memory_required_bytes",
                        "Estimated GPU memory per GPU of the workload at its peak", _WL)
memory_capacity = Gauge("rackfit_workload_memory_capacity_bytes",
                        "Usable GPU memory per GPU of the workload's placement, or of what its target asks for", _WL)
oversubscribed = Gauge("rackfit_workload_oversubscribed", "1 when the workload needs more than it is given", _WL)
fits = Gauge("rackfit_workload_fits", "1 when some allowed instance type can hold the workload", _WL)
placed = Gauge("rackfit_workload_placed", "1 when capacity was found and the target patched", _WL)
_DOMAIN = ["instance_type", "domain"]
reconcile_duration = Histogram("rackfit_reconcile_duration_seconds", "Time to estimate, plan and patch one workload",
                               buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
reconcile_errors = Counter("rackfit_reconcile_errors_total", "Reconciles that ended in an error")

WORKLOAD_GAUGES = (memory_required, memory_capacity, oversubscribed, fits, placed)


def forget_workload(namespace: str, name: str) -> None:
    for g in WORKLOAD_GAUGES:
        try:
            g.remove(namespace, name)
        except KeyError:
            pass


class _Domains(Collector):
    """Per-domain gauges read from the ledger when Prometheus scrapes: O(fleet) per scrape, nothing
    per reconcile."""

    def __init__(self) -> None:
        self.usage: Callable[[], dict] = dict

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


domains = _Domains()
REGISTRY.register(domains)


def watch_domains(usage: Callable[[], dict]) -> None:
    """Export the ledger's per-domain usage (`Inventory.usage`)."""
    domains.usage = usage


def serve(port: int) -> None:
    if port:
        start_http_server(port)
