"""The framework's own limit: a kopf operator whose handler does nothing but mark the LLMWorkload
Placed (one status patch, as rackfit's handler makes). Used by bench/operator_throughput.py."""

from typing import Any

import kopf

from rackfit.api.conditions import PLACED, set_condition


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # the same settings as rackfit's operator (rackfit/operator/startup.py), so only the handler differs
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rackfit.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="rackfit.io", key="last-handled-configuration")
    settings.posting.enabled = False
    settings.execution.max_workers = 16
    settings.batching.worker_limit = 64


@kopf.on.create("rackfit.io", "v1alpha1", "llmworkloads")
def noop(meta, patch, **_: Any) -> None:
    patch.status["conditions"] = set_condition([], PLACED, True, "Noop", "", meta.get("generation"))
