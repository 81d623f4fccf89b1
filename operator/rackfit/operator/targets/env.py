"""The plan handed to the containers as `RACKFIT_*` variables (pure)."""

from __future__ import annotations

from typing import Any

from rackfit import names as n
from rackfit.spec import LLMWorkloadSpec


def plan_env(placement: dict[str, Any], estimate: dict[str, Any] | None, spec: LLMWorkloadSpec) -> dict[str, str]:
    """The `RACKFIT_*` variables of a placement: the layout, nodes and instance type; for serving
    engines also the engine settings estimated for the GPU (`estimate.engine`), else the spec's."""
    env = {n.ENV_TENSOR: placement["tensor"], n.ENV_PIPELINE: placement["pipeline"], n.ENV_DATA: placement["data"],
           n.ENV_EXPERT: placement["expert"], n.ENV_NNODES: placement["nodes"],
           n.ENV_GPUS_PER_NODE: placement["gpusPerNode"], n.ENV_INSTANCE_TYPE: placement["instanceType"]}
    inference = spec.inference if spec.workload == "inference" else None
    if inference is not None and inference.serving_engine:
        engine = (estimate or {}).get("engine") or {}
        env[n.ENV_MAX_MODEL_LEN] = engine.get("maxModelLen") or inference.context_length
        # without an engine estimate: the spec's fraction, else what the plan leaves the GPU (1 - headroom)
        utilization = engine.get("gpuMemoryUtilization") or inference.gpu_memory_utilization or \
            round(1 - spec.placement.headroom, 4)
        env[n.ENV_GPU_MEMORY_UTILIZATION] = f"{utilization:g}"
        env[n.ENV_MAX_NUM_SEQS] = engine.get("maxNumSeqs") or inference.max_num_seqs or inference.concurrency
    return {k: str(v) for k, v in env.items()}
