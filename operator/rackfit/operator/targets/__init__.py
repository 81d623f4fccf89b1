"""Targets: the workloads rackfit places (`registry.ADAPTERS`, one module per kind), the patches that
pin them to a placement and take that back (`patches`), and the plan's variables (`env`). Pure."""

from rackfit.operator.targets.base import TargetKind, pod_gpus
from rackfit.operator.targets.env import plan_env
from rackfit.operator.targets.patches import (
    APPLIED,
    applied,
    kueue_patch,
    merge_diff,
    pinned_domain,
    place_patch,
    unplace_patch,
)
from rackfit.operator.targets.registry import ADAPTERS, adapter
from rackfit.planner import Placement


def requested_gpus(target: dict, per_pod: int | None = None, group_size: int | None = None) -> int:
    """GPUs the target asks for in all (its kind's rule)."""
    return adapter(target.get("kind")).requested_gpus(target, per_pod, group_size)


def shape_problem(target: dict, ref: str, placement: Placement) -> str | None:
    """Why this target cannot run this placement, naming the field to change; None if it can."""
    return adapter(target.get("kind")).shape_problem(target, ref, placement)


__all__ = ["ADAPTERS", "APPLIED", "TargetKind", "adapter", "applied", "kueue_patch", "merge_diff", "pinned_domain",
           "place_patch", "plan_env", "pod_gpus", "requested_gpus", "shape_problem", "unplace_patch"]
