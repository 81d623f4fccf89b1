"""rackfit: GPU memory estimates and NVLink-aware placement for LLM workloads.

The public surface is small: `estimate()`, `plan()`, `load_catalog()` and the spec model.
Everything here is pure computation; Kubernetes lives in `rackfit.operator`.
"""

from rackfit.catalog import Catalog, load_catalog
from rackfit.estimator import estimate
from rackfit.planner import plan
from rackfit.spec import LLMWorkloadSpec, parse_spec

__version__ = "0.1.0"
__all__ = ["LLMWorkloadSpec", "parse_spec", "Catalog", "load_catalog", "estimate", "plan", "__version__"]
