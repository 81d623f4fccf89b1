"""What the operator builds once at start and hands to every handler through kopf's memo (`memo.ctx`):
configuration, catalog, the ledger and metrics. Nothing is read at import, so tests build their own."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from rackfit.catalog import Catalog
from rackfit.operator.config import OperatorConfig
from rackfit.operator.ledger import Ledger
from rackfit.operator.metrics import Metrics
from rackfit.operator.observed import Observer
from rackfit.operator.scheduler import Scheduler


@dataclass
class OperatorContext:
    config: OperatorConfig
    catalog: Catalog
    ledger: Ledger
    metrics: Metrics
    # counts changes of the schedulable GPU fleet (a node added, removed, cordoned, NotReady,
    # relabelled), not pod churn or heartbeats, so that timers can tell in O(1) whether to plan again
    fleet_version: int = 0
    # the last answer of the batched Prometheus query (observed.py); None without a Prometheus URL
    observer: Observer | None = None
    # ComputeDomains for placements across nodes of one NVL72 rack (computedomains.py): set at start
    # from the configuration and API discovery
    compute_domains: bool = False
    # rackfit answers Kueue's admission checks and leaves Kueue's targets to it (kueue.py): set at start
    kueue: bool = False
    # decisions in cycles under the ledger's lock (scheduler.py)
    scheduler: Scheduler | None = None

    @classmethod
    def build(cls, config: OperatorConfig, registry: CollectorRegistry = REGISTRY) -> OperatorContext:
        ledger = Ledger()
        metrics = Metrics(registry, ledger.usage)
        observer = Observer(config.prometheus_url, config.observed_seconds, config.observed_window,
                            config.prometheus_timeout, metrics) if config.prometheus_url else None
        return cls(config=config, catalog=config.catalog(), ledger=ledger, metrics=metrics, observer=observer,
                   scheduler=Scheduler(ledger.lock, metrics.decision_cycle.observe))
