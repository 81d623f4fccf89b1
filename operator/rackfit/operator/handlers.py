"""The one module that registers the operator's kopf handlers (`rackfit operator`, or
`kopf run -m rackfit.operator.handlers`): importing each module below registers its handlers."""

from rackfit.operator import kopf_fixes

kopf_fixes.apply()  # before kopf starts: index readiness in O(n) (kopf_fixes.py)

from rackfit.operator import admission, fleet, startup, workloads  # noqa: E402  (registers after the fix)

__all__ = ["admission", "fleet", "startup", "workloads"]
