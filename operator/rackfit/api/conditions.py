"""Condition types and CamelCase reasons of LLMWorkload status, and `set_condition()` (pure).

Conditions follow metav1.Condition: type, status, reason, message, observedGeneration,
lastTransitionTime; the transition time changes only when the status does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# types
ESTIMATED, FITS, PLACED, OVERSUBSCRIBED = "Estimated", "Fits", "Placed", "Oversubscribed"
PODS_SCHEDULED = "PodsScheduled"  # the placed workload's pods: bound, or why kube-scheduler keeps them Pending
# what the workload really uses (Prometheus: dcgm-exporter, vLLM, SGLang) against the estimate (rackfit.observed)
ESTIMATE_HOLDS = "EstimateHolds"
CONDITION_TYPES = (ESTIMATED, FITS, PLACED, OVERSUBSCRIBED, PODS_SCHEDULED, ESTIMATE_HOLDS)

# reasons
ESTIMATE_READY = "EstimateReady"
INVALID_SPEC = "InvalidSpec"
FITS_INSTANCE_TYPE = "FitsInstanceType"
NO_FEASIBLE_INSTANCE_TYPE = "NoFeasibleInstanceType"
CAPACITY_FOUND = "CapacityFound"
TARGET_PATCHED = "TargetPatched"
WAITING_FOR_CAPACITY = "WaitingForCapacity"
TARGET_NOT_FOUND = "TargetNotFound"
NO_TARGET = "NoTarget"
WITHIN_CAPACITY = "WithinCapacity"
TARGET_UNDERSIZED = "TargetUndersized"
DOMAIN_OVERCOMMITTED = "DomainOvercommitted"
# pods of the target from before its placement (other GPUs, or outside the domain) hold GPUs its new
# pods wait for: a rolling update that waits for new pods before removing old ones would never finish
ROLLOUT_BLOCKED = "RolloutBlocked"
# Event reason on a labelled pod that was bound without rackfit's placement and deleted (its controller
# makes it again, gated)
OUTSIDE_PLACEMENT = "OutsidePlacement"
UNSCHEDULABLE = "Unschedulable"  # kube-scheduler's own reason on the pods' PodScheduled condition
NONE_UNSCHEDULABLE = "NoneUnschedulable"
NOT_PLACED = "NotPlaced"
CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"  # spec.model.huggingFaceConfig names one that is not there (yet)
TARGET_NOT_SUSPENDED = "TargetNotSuspended"  # a Job or JobSet that already runs: its pods cannot be placed
# a Deployment or StatefulSet target of a placement where one model replica spans nodes: its pods would be
# independent servers each holding part of the model (use a LeaderWorkerSet or JobSet)
TARGET_NOT_MULTI_NODE = "TargetNotMultiNode"
TARGET_SHAPE_MISMATCH = "TargetShapeMismatch"  # a JobSet whose GPU pods are not the planned nodes; LWS groups > 1
# a target with kueue.x-k8s.io/queue-name is Kueue's: placed (admitted) by Kueue, rackfit its admission check
ADMITTED_BY_KUEUE = "AdmittedByKueue"
PENDING_IN_KUEUE = "PendingInKueue"

# EstimateHolds
WITHIN_ESTIMATE = "WithinEstimate"
OBSERVED_ABOVE_ESTIMATE = "ObservedAboveEstimate"  # training: peak framebuffer use above estimate.totalBytes
ENGINE_KV_CACHE_SMALLER = "EngineKVCacheSmaller"  # serving: fewer KV tokens than concurrency x contextLength
NO_OBSERVATIONS = "NoObservations"  # no series for its pods (exporter absent, pod mapping off, not started)
PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"  # no answer yet from observed.prometheusURL


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[dict[str, Any]], type_: str, status: bool | str, reason: str, message: str,
                  generation: int | None, at: str | None = None) -> list[dict[str, Any]]:
    """A new list with `type_` set; other conditions kept in order."""
    status = status if isinstance(status, str) else ("True" if status else "False")
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != status
    new = {"type": type_, "status": status, "reason": reason, "message": message[:32768],
           "observedGeneration": generation or 0,
           "lastTransitionTime": (at or now()) if changed else old.get("lastTransitionTime") or now()}
    out = [new if c.get("type") == type_ else c for c in conditions]
    return out if old is not None else [*out, new]


def condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
