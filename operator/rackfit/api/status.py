"""The status views of results: one shape for `rackfit ... -o json|yaml` and `LLMWorkload.status`."""

from __future__ import annotations

from typing import Any

from rackfit.estimator import Estimate
from rackfit.planner import Placement, Plan


def estimate_view(est: Estimate) -> dict[str, Any]:
    return est.model_dump(by_alias=True, mode="json")


def placement_view(p: Placement) -> dict[str, Any]:
    return p.model_dump(by_alias=True, mode="json", exclude_none=True)


def plan_view(plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {"fits": plan.fits}
    if plan.chosen:
        out["estimate"] = estimate_view(plan.chosen.estimate)
        out["placement"] = placement_view(plan.chosen.placement)
    out["alternatives"] = [{"placement": placement_view(o.placement), "totalBytes": o.estimate.total_bytes}
                           for o in plan.alternatives]
    out["rejected"] = [r.model_dump(by_alias=True) for r in plan.rejected]
    if plan.unplaced:
        out["unplaced"] = [r.model_dump(by_alias=True) for r in plan.unplaced]
    return out
