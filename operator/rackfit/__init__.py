"""rackfit: GPU memory estimates and NVLink-aware placement for LLM workloads.

The public surface is small: `estimate()`, `plan()`, `load_catalog()` and the spec model.
Everything here is pure computation; Kubernetes lives in `rackfit.operator`.
"""

__version__ = "0.1.0"
