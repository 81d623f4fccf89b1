"""Deployment: independent serving replicas from one template (apps/v1)."""

from rackfit.operator.targets.base import TargetKind


class Deployment(TargetKind):
    kind, group, version, plural = "Deployment", "apps", "v1", "deployments"
    single_node = True
