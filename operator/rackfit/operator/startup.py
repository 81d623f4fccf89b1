"""Operator settings at start-up: kopf configuration, the catalog, the metrics server."""

from __future__ import annotations

from functools import cache
from typing import Any

import kopf

from rackfit.catalog import Catalog
from rackfit.operator import metrics
from rackfit.operator.config import OperatorConfig

CONFIG = OperatorConfig.from_env()


@cache
def catalog() -> Catalog:
    return CONFIG.catalog()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger, **_: Any) -> None:
    # progress in annotations, so that status stays exactly the CRD's schema
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rackfit.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="rackfit.io", key="last-handled-configuration")
    settings.posting.level = 20  # INFO and up become Events
    settings.execution.max_workers = 16
    settings.batching.worker_limit = 64
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    catalog()  # fail at start, not at the first workload, when the catalog file is bad
    metrics.serve(CONFIG.metrics_port)
    logger.info(f"rackfit operator: {len(catalog().instance_types)} instance types, "
                f"metrics on :{CONFIG.metrics_port}")
