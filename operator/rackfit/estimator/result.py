"""The estimate's value objects: what the CLI prints and the operator stores in `status.estimate`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from rackfit.spec import Parallelism as Layout  # the spec's parallelism is the layout estimated

__all__ = ["Breakdown", "EngineSettings", "Estimate", "Layout"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Breakdown(_Out):
    """Bytes per GPU live at the estimated peak, by what holds them."""

    weights_bytes: int = Field(ge=0)
    kv_cache_bytes: int = Field(0, ge=0)
    activations_bytes: int = Field(0, ge=0, description="includes logits and loss buffers")
    gradients_bytes: int = Field(0, ge=0)
    optimizer_states_bytes: int = Field(0, ge=0)
    cuda_graph_bytes: int = Field(0, ge=0, description="captured CUDA graphs' memory pool (serving engines)")
    non_torch_bytes: int = Field(0, ge=0, description="memory outside PyTorch's allocator: NCCL and custom "
                                 "all-reduce buffers (serving engines)")
    overhead_bytes: int = Field(0, ge=0, description="CUDA context, cuBLAS/NCCL workspaces, allocator slack")

    @property
    def total(self) -> int:
        return (self.weights_bytes + self.kv_cache_bytes + self.activations_bytes + self.gradients_bytes
                + self.optimizer_states_bytes + self.cuda_graph_bytes + self.non_torch_bytes + self.overhead_bytes)


class EngineSettings(_Out):
    """A serving engine's settings as it will run them on the planned GPU: the spec's values, else the
    engine's own defaults for that GPU. The operator hands them to the containers (RACKFIT_* variables)."""

    engine: str
    gpu_memory_utilization: float = Field(description="vLLM's gpu_memory_utilization, SGLang's "
                                          "mem_fraction_static, TensorRT-LLM's free_gpu_memory_fraction")
    max_num_batched_tokens: int
    max_num_seqs: int
    max_model_len: int


class Estimate(_Out):
    total_bytes: int = Field(description="per GPU, at the peak")
    breakdown: Breakdown
    layout: Layout
    parameters: int
    active_parameters: int
    peak_phase: str = Field(description="when the peak happens, e.g. 'prefill' or 'loss backward'")
    engine_budget_bytes: int | None = Field(None, description=(
        "serving engines on a known GPU: the memory the engine claims per GPU (vLLM: gpuMemoryUtilization x "
        "total); the KV cache takes what the rest leaves"))
    engine: EngineSettings | None = Field(None, description="serving engines on a known GPU: the settings "
                                          "estimated, defaults resolved")
    kv_cache_tokens: int | None = Field(None, description="serving engines on a known GPU: tokens the KV cache "
                                        "holds per replica")
    kv_cache_pool_bytes: int | None = Field(None, description="serving engines on a known GPU: the KV cache the "
                                            "engine allocates per GPU (vLLM's 'Available KV cache memory')")
    max_concurrency: float | None = Field(None, description="serving engines on a known GPU: contextLength "
                                          "requests that fit at once (vLLM's 'Maximum concurrency')")
    refused: str | None = Field(None, description=(
        "serving engines: why the engine would not start on this layout whatever its KV cache holds (then "
        "maxConcurrency is 0), e.g. fp8 blocks split across tensor ranks, CUDA graphs beyond the budget"))
    engine_starts: bool | None = Field(None, description=(
        "serving engines on a known GPU: whether the engine process would start on this layout. vLLM refuses a KV "
        "cache that holds less than one contextLength request; SGLang starts with any pool of a few tokens and "
        "rejects requests longer than it holds (then maxConcurrency is below 1 although it starts)"))
    error_band: str | None = Field(None, description=(
        "the measured error of this estimate's regime (runtime, workload kind, GPU family) on make bench's rows, "
        "e.g. '-4.5%..+3.9% of memory on 14 measured rows (...)', from 20 rows with the range of the middle 80% of "
        "them, or 'unmeasured' where no row was measured; "
        "for serving engines the error is of the KV cache (positive: more cache promised than the engine "
        "allocates)"))
    notes: list[str] = Field(default_factory=list)
