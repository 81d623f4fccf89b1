"""Job (batch/v1): created suspended; its pod template takes only scheduling fields, and only while
suspended (kubernetes pkg/apis/batch/validation: the template is mutable for a suspended Job that
never started), so its pods get the GPU limit and variables from the pod webhook."""

from typing import Any

from rackfit.operator.targets.base import TargetKind


class Job(TargetKind):
    kind, group, version, plural = "Job", "batch", "v1", "jobs"
    editable = False
    suspendable = True

    def pods(self, target: dict[str, Any]) -> int:
        parallelism = (target.get("spec") or {}).get("parallelism", 1)
        return 1 if parallelism is None else parallelism
