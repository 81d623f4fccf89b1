"""The rackfit operator: kopf handlers over LLMWorkloads, with the GPU fleet read from Nodes and Pods.

Run it with `rackfit operator` (or `kopf run -m rackfit.operator`). Importing this package
registers the handlers; the pure decisions live in `reconcile.py` and `targets.py`.
"""

from rackfit.operator import admission, fleet, startup, workloads  # noqa: F401  (registers handlers)
