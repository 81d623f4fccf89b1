"""The Kubernetes side of rackfit: kopf handlers over LLMWorkloads, with the GPU fleet read from
Nodes and Pods. Importing this package registers nothing: `rackfit operator` loads
`rackfit.operator.handlers`, which does. The decisions are pure (`reconcile.py`, `targets.py`)."""
