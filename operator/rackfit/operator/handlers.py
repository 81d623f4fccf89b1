"""The one module that registers the operator's kopf handlers (`rackfit operator`, or
`kopf run -m rackfit.operator.handlers`): importing each module below registers its handlers."""

from rackfit.operator import admission, fleet, startup, workloads

__all__ = ["admission", "fleet", "startup", "workloads"]
