"""JobSet (jobset.x-k8s.io/v1alpha2): multi-node training as replicated Jobs, created suspended. Its
replicated Jobs cannot change after creation, so rackfit checks that its GPU pods are the planned
nodes instead of setting them."""

from typing import Any

from rackfit.operator.targets.base import TargetKind, Template, template_gpus
from rackfit.planner import Placement


def _job_spec(rj: dict[str, Any]) -> dict[str, Any]:
    """A replicated Job's JobSpec (its `template.spec`)."""
    return (rj.get("template") or {}).get("spec") or {}


def _job_pods(rj: dict[str, Any]) -> int:
    parallelism = _job_spec(rj).get("parallelism")
    return rj.get("replicas", 1) * (1 if parallelism is None else parallelism)


class JobSet(TargetKind):
    kind, group, version, plural = "JobSet", "jobset.x-k8s.io", "v1alpha2", "jobsets"
    verbs = ("get", "list", "watch", "patch")
    editable = False
    suspendable = True

    def pod_templates(self, target: dict[str, Any]) -> list[Template]:
        return [(f"replicatedJobs[{rj.get('name')}]",
                 rj.setdefault("template", {}).setdefault("spec", {}).setdefault("template", {}))
                for rj in target.setdefault("spec", {}).get("replicatedJobs") or []]

    @staticmethod
    def gpu_jobs(target: dict[str, Any]) -> list[dict[str, Any]]:
        """Its replicated Jobs whose pods ask for GPUs (all of them when none does)."""
        jobs = (target.get("spec") or {}).get("replicatedJobs") or []
        with_gpus = [rj for rj in jobs if template_gpus(_job_spec(rj).get("template"))]
        return with_gpus or jobs

    def pods(self, target: dict[str, Any]) -> int:
        return sum(_job_pods(rj) for rj in self.gpu_jobs(target))

    def requested_gpus(self, target: dict[str, Any], per_pod: int | None = None, group_size: int | None = None
                       ) -> int:
        return sum(_job_pods(rj) * template_gpus(_job_spec(rj).get("template")) for rj in self.gpu_jobs(target))

    def shape_problem(self, target: dict[str, Any], ref: str, placement: Placement) -> str | None:
        nodes, per_node = placement.nodes, placement.gpus_per_node
        jobs = self.gpu_jobs(target)
        pods = self.pods(target)
        if pods == nodes:
            return None
        names = ", ".join(f"spec.replicatedJobs[{rj.get('name')}]" for rj in jobs) or "spec.replicatedJobs"
        return (f"{names}: {pods} pods (replicas x template.spec.parallelism) for a placement of {nodes} nodes "
                f"x {per_node} GPUs; allowed: {nodes} (parallelism and completions {nodes} with replicas 1): "
                f"create {ref} again, suspended (a JobSet's replicated Jobs cannot change after creation)")
