"""StatefulSet: independent serving replicas with stable names (apps/v1)."""

from rackfit.operator.targets.base import TargetKind


class StatefulSet(TargetKind):
    kind, group, version, plural = "StatefulSet", "apps", "v1", "statefulsets"
    single_node = True
