"""What every kind of target is to rackfit: one `TargetKind` per Kubernetes kind, in the manner of
Kueue's GenericJob interface (pkg/controller/jobframework/interface.go). A kind owns its API
coordinates and RBAC verbs, its pod templates and which of their fields rackfit may edit, its
suspension, its group size and the GPUs it asks for, and its shape checks; the patches that place
and unplace it (`patches.py`) are the same for every kind and call these hooks (pure)."""

from __future__ import annotations

from typing import Any, ClassVar

from rackfit.names import GPU
from rackfit.planner import Placement

Template = tuple[str, dict[str, Any]]  # (name in the patch record, PodTemplateSpec)


def pod_gpus(pod_spec: dict[str, Any] | None) -> int:
    """GPUs a pod (spec) asks for: each container's request, else its limit (the API server defaults an
    extended resource's request to its limit, and they must be equal when both are set)."""
    total = 0
    for c in (pod_spec or {}).get("containers") or []:
        res = c.get("resources") or {}
        value = (res.get("requests") or {}).get(GPU) or (res.get("limits") or {}).get(GPU)
        total += int(value) if value else 0
    return total


def template_gpus(template: dict[str, Any] | None) -> int:
    return pod_gpus((template or {}).get("spec"))


class TargetKind:
    """The default: one pod template at `spec.template`, editable, not suspended, one pod per replica."""

    kind: ClassVar[str]
    group: ClassVar[str]
    version: ClassVar[str]
    plural: ClassVar[str]
    verbs: ClassVar[tuple[str, ...]] = ("get", "patch")  # what the operator calls on it (rbac.RULES)
    # its pod templates take the GPU limit and the RACKFIT_* variables; False: only scheduling
    # fields, and only while suspended (a Job's), so its pods get them from the pod webhook
    editable: ClassVar[bool] = True
    suspendable: ClassVar[bool] = False  # created suspended; rackfit starts it once placed
    # its pods are independent replicas (servers): one model replica must fit in one pod's node
    single_node: ClassVar[bool] = False
    # its pod templates are one unit of placement (a LeaderWorkerSet's leader and workers): under Kueue,
    # `podset-group-name` keeps them in one topology domain
    grouped: ClassVar[bool] = False

    def pod_templates(self, target: dict[str, Any]) -> list[Template]:
        """(name, PodTemplateSpec) of each pod template, in place (missing specs created, so call it on
        a copy when the target must stay as it is)."""
        return [("template", target.setdefault("spec", {}).setdefault("template", {}))]

    def pods(self, target: dict[str, Any]) -> int:
        """How many pods it runs."""
        replicas = (target.get("spec") or {}).get("replicas", 1)
        return 1 if replicas is None else replicas

    def group_size(self, placement: Placement) -> int | None:
        """The group size rackfit sets for this placement (None: the kind has none)."""
        return None

    def set_group_size(self, new: dict[str, Any], before: dict[str, Any], size: int) -> dict[str, Any] | None:
        """Set the group size on `new` (a copy of the target); the record to undo it, or None."""
        return None

    def unset_group_size(self, new: dict[str, Any], record: dict[str, Any] | None) -> None:
        """Give the group size back as `record` found it (a value the user changed since stays)."""

    def requested_gpus(self, target: dict[str, Any], per_pod: int | None = None, group_size: int | None = None
                       ) -> int:
        """GPUs it asks for in all: its pods x their GPUs (`per_pod` when rackfit sets the limit)."""
        spec = target.get("spec") or {}
        return self.pods(target) * (template_gpus(spec.get("template")) if per_pod is None else per_pod)

    def shape_problem(self, target: dict[str, Any], ref: str, placement: Placement) -> str | None:
        """Why it cannot run this placement, naming the field to change; None if it can."""
        per_node, nodes = placement.gpus_per_node, placement.nodes
        if self.single_node and placement.tensor * placement.pipeline > per_node:
            return (f"spec.target.kind: one replica of the model spans {nodes} nodes (tensor {placement.tensor} x "
                    f"pipeline {placement.pipeline} on {per_node}-GPU {placement.instance_type} nodes), and the "
                    f"pods of {ref} are independent servers, each with {per_node} GPUs; allowed: LeaderWorkerSet "
                    f"(serving: one leader and {nodes - 1} workers per group) or JobSet (training), or, for data-"
                    f"parallel replicas of a {self.kind}, a layout where each replica holds the whole model on one "
                    f"node (spec.parallelism with tensor x pipeline <= {per_node})")
        return None

    def suspended(self, target: dict[str, Any]) -> bool:
        return self.suspendable and bool((target.get("spec") or {}).get("suspend"))

    def resume_patch(self) -> dict[str, Any]:
        return {"spec": {"suspend": False}}

    def asked_gpus(self, target: dict[str, Any], placement: Placement) -> int:
        """GPUs it asks for once patched for `placement`: rackfit sets the limit of editable templates
        (and the group size where the kind has one); other kinds keep their own."""
        per_pod = placement.gpus_per_node if self.editable else None
        return self.requested_gpus(target, per_pod, self.group_size(placement))
