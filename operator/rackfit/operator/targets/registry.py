"""The kinds of target rackfit places: adding one (a RayCluster, a Kubeflow TrainJob) is one module
beside these and one line here. `spec.target.kind` allows exactly these (a unit test keeps the two
equal)."""

from rackfit.operator.targets.base import TargetKind
from rackfit.operator.targets.deployment import Deployment
from rackfit.operator.targets.job import Job
from rackfit.operator.targets.jobset import JobSet
from rackfit.operator.targets.leaderworkerset import LeaderWorkerSet
from rackfit.operator.targets.statefulset import StatefulSet

ADAPTERS: dict[str, TargetKind] = {a.kind: a for a in (
    Deployment(),
    StatefulSet(),
    Job(),
    LeaderWorkerSet(),
    JobSet(),
)}


def adapter(kind: str) -> TargetKind:
    return ADAPTERS[kind]
