"""Prometheus metrics of the operator (prometheus-client), served on RACKFIT_METRICS_PORT.

Label values are bounded: namespace and name of LLMWorkloads, instance type and NVLink domain.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

_WL = ["namespace", "name"]
memory_required = Gauge("rackfit_workload_memory_required_bytes",
                        "Estimated GPU memory per GPU of the workload at its peak", _WL)
memory_capacity = Gauge("rackfit_workload_memory_capacity_bytes",
                        "Usable GPU memory per GPU of the workload's placement, or of what its target asks for", _WL)
oversubscribed = Gauge("rackfit_workload_oversubscribed", "1 when the workload needs more than it is given", _WL)
fits = Gauge("rackfit_workload_fits", "1 when some allowed instance type can hold the workload", _WL)
placed = Gauge("rackfit_workload_placed", "1 when capacity was found and the target patched", _WL)
_DOMAIN = ["instance_type", "domain"]
domain_allocatable = Gauge("rackfit_domain_gpus_allocatable", "Allocatable GPUs of schedulable nodes per NVLink domain",
                           _DOMAIN)
domain_requested = Gauge("rackfit_domain_gpus_requested", "GPUs requested by bound pods per NVLink domain", _DOMAIN)
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


def set_domains(usage: dict[tuple[str, str], tuple[int, int]]) -> None:
    domain_allocatable.clear()
    domain_requested.clear()
    for (itype, domain), (alloc, used) in usage.items():
        domain_allocatable.labels(itype, domain).set(alloc)
        domain_requested.labels(itype, domain).set(used)


def serve(port: int) -> None:
    if port:
        start_http_server(port)
