"""LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): multi-node serving, one leader and size-1 workers
per group; rackfit sets the group size to the planned nodes and books one group."""

from typing import Any

from rackfit.operator.targets.base import TargetKind, Template, template_gpus
from rackfit.planner import Placement


class LeaderWorkerSet(TargetKind):
    kind, group, version, plural = "LeaderWorkerSet", "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
    verbs = ("get", "list", "watch", "patch")
    grouped = True

    def pod_templates(self, target: dict[str, Any]) -> list[Template]:
        lwt = target.setdefault("spec", {}).setdefault("leaderWorkerTemplate", {})
        return [(k, lwt[k]) for k in ("leaderTemplate", "workerTemplate") if lwt.get(k)]

    def group_size(self, placement: Placement) -> int | None:
        return placement.nodes  # one pod per planned node

    def set_group_size(self, new: dict[str, Any], before: dict[str, Any], size: int) -> dict[str, Any] | None:
        lwt = new["spec"]["leaderWorkerTemplate"]
        previous = (before.get("groupSize") or {}).get("previous", lwt.get("size"))
        lwt["size"] = size
        return {"value": size, "previous": previous}

    def unset_group_size(self, new: dict[str, Any], record: dict[str, Any] | None) -> None:
        lwt = new["spec"].get("leaderWorkerTemplate") or {}
        if record and lwt.get("size") == record["value"]:
            if record["previous"] is None:
                lwt.pop("size", None)
            else:
                lwt["size"] = record["previous"]

    def requested_gpus(self, target: dict[str, Any], per_pod: int | None = None, group_size: int | None = None
                       ) -> int:
        spec = target.get("spec", {})
        lwt = spec.get("leaderWorkerTemplate") or {}
        size = group_size if group_size is not None else lwt.get("size", 1)
        workers = template_gpus(lwt.get("workerTemplate")) if per_pod is None else per_pod
        leader = template_gpus(lwt.get("leaderTemplate") or lwt.get("workerTemplate")) if per_pod is None else per_pod
        replicas = spec.get("replicas")
        return (1 if replicas is None else replicas) * (leader + (size - 1) * workers)

    def shape_problem(self, target: dict[str, Any], ref: str, placement: Placement) -> str | None:
        """One group, the one rackfit books: a second would run on GPUs nobody booked."""
        groups = (target.get("spec") or {}).get("replicas")
        if groups in (None, 1):
            return None
        nodes, per_node = placement.nodes, placement.gpus_per_node
        return (f"spec.replicas: {groups} groups in {ref}, and rackfit books one group ({nodes} nodes x {per_node} "
                f"GPUs in one NVLink domain) per LLMWorkload; allowed: 1 (for more copies of the model, set the "
                f"LLMWorkload's spec.parallelism.data: its replicas run inside the one group as the engine's data "
                f"parallelism, RACKFIT_DATA_PARALLEL_SIZE; or give each LeaderWorkerSet its own LLMWorkload)")
