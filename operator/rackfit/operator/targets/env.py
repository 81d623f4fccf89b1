"""The plan handed to the containers as `RACKFIT_*` variables (pure)."""

from __future__ import annotations

from typing import Any

from rackfit import names as n
from rackfit.estimator import Estimate
from rackfit.planner import Placement
from rackfit.spec import LLMWorkloadSpec


def plan_env(placement: Placement, estimate: Estimate | None, spec: LLMWorkloadSpec) -> dict[str, str]:
    """The `RACKFIT_*` variables of a placement: the layout, nodes and instance type; for serving
    engines also the engine settings estimated for the GPU (`estimate.engine`), else the spec's."""
    env: dict[str, Any] = {
        n.ENV_TENSOR: placement.tensor, n.ENV_PIPELINE: placement.pipeline, n.ENV_DATA: placement.data,
        n.ENV_EXPERT: placement.expert, n.ENV_NNODES: placement.nodes, n.ENV_GPUS_PER_NODE: placement.gpus_per_node,
        n.ENV_INSTANCE_TYPE: placement.instance_type}
    inference = spec.inference if spec.workload == "inference" else None
    if inference is not None and inference.serving_engine:
        engine = estimate.engine if estimate else None
        env[n.ENV_MAX_MODEL_LEN] = engine.max_model_len if engine else inference.context_length
        # without an engine estimate: the spec's fraction, else what the plan leaves the GPU (1 - headroom)
        utilization = engine.gpu_memory_utilization if engine else (
            inference.gpu_memory_utilization or round(1 - spec.placement.headroom, 4))
        env[n.ENV_GPU_MEMORY_UTILIZATION] = f"{utilization:g}"
        env[n.ENV_MAX_NUM_SEQS] = engine.max_num_seqs if engine else inference.max_num_seqs or inference.concurrency
    return {k: str(v) for k, v in env.items()}
