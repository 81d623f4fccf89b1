"""Whether vLLM gets through its start-up once the KV cache is sized: what must fit OUTSIDE the cache's budget.

vLLM sizes the KV cache as gpu_memory_utilization x total less what its profile run measured
(vllm/v1/worker/gpu_worker.py determine_available_memory). Three things come after, or before, that sum and are not in
it, and each can stop the engine although the cache holds many requests:
- at start-up, the free memory must already cover util x total (request_memory, INIT_FREE_CHECK);
- the memory the process holds before vLLM's baseline snapshot (the CUDA context; NCCL's communicators from
  NCCL_BEFORE_SNAPSHOT) is never budgeted: it comes out of the 1 - util share;
- after the cache is allocated, compile_or_warm_up_model captures the CUDA graphs (outside the budget before
  engines.GRAPHS_IN_BUDGET) and then warms the sampler up again with max_num_seqs dummy requests ("called after
  capture_model on purpose"): its logits and probabilities are allocated anew in what is left, the profile run's
  freed activations plus the 1 - util share less the memory above.
Pure: no I/O. engines.serve passes the sizes it has computed.
"""

from __future__ import annotations

from rackfit.estimator.non_torch import NON_TORCH_BASE
from rackfit.spec import Inference
from rackfit.units import GiB

# V1 from 0.9.1 refuses to start when the free memory at init_device is below util x total (read in 0.9.2-0.11.0
# gpu_worker.py init_device, 0.14.0-0.19.0 vllm/v1/worker/utils.py request_memory: "Free memory on device ... on startup
# is less than desired GPU memory utilization"); 0.8.5 has no such check. The same release took the baseline snapshot
# there and stopped counting the CUDA context in the budget (engines.V1_CONTEXT_IN_BUDGET_UNTIL).
INIT_FREE_CHECK = (0, 9, 1)
# From 0.11.0 init_device initializes the distributed environment before the snapshot ("Initialize the distributed
# environment BEFORE taking memory snapshot. This ensures NCCL buffers are allocated before we measure available
# memory"; read in 0.11.0-0.19.0; 0.9.2 and 0.10.1 took the snapshot first). requested_memory is util x total, not util
# x what is free, so what NCCL holds at that point is outside the KV cache's budget and outside its non-torch count.
NCCL_BEFORE_SNAPSHOT = (0, 11)
# ...its size on an NVLink node: 1.02 GiB, set by S15's run (vLLM 0.19.0, Llama 3.1 8B at tensor 2 on H100: "worker init
# memory snapshot: ... cuda_memory=1.53GiB" against 0.51 GiB for S14's tensor 1, the bare context); S16 (tensor 4) 1.55,
# S35 and S36 (pipeline 2 and 4) 1.43 and 1.48 check it. MoE models logged 2.01-2.07 GiB there (S22's Mixtral, S38's
# gpt-oss-20b): the expert-parallel group below. Over PCIe no log gives it; rackfit counts none there.
NCCL_INIT_NVLINK = int(1.02 * GiB)
# ...and the expert-parallel group's communicator beside it: initialize_model_parallel
# (vllm/distributed/parallel_state.py) builds an "ep" GroupCoordinator over data x prefill-context x tensor ranks, for
# every model through 0.13.0 and, from 0.14.0, only when model_config.is_moe ("Don't create EP group for dense models";
# read in 0.11.0-0.19.0). 0.48 GiB on an NVLink node, set by S22's run (Mixtral at tensor 2: "cuda_memory=2.01GiB"
# against S15's 1.53); S38 (gpt-oss-20b, tensor 2) and the sweep's Kimi-VL-A3B run (2.01) and Llama-4-Scout run at
# tensor 4 (2.07 against S16's 1.55) check it.
NCCL_EP_GROUP_NVLINK = int(0.48 * GiB)
EP_GROUP_MOE_ONLY = (0, 14)
# From 0.33.0 init_device creates cuBLAS's and cuBLASLt's handles before the snapshot ("Create the handles now, before
# the snapshot, so they count as baseline like the NCCL buffers": a torch.mm and a biased linear on 16 x 16; read in
# 0.33.0 and 0.34.0, absent from 0.30.0-0.32.0): their memory leaves the profile's non-torch count, which the KV cache's
# budget pays, for the baseline, which it does not, and the free-memory check at start-up sees it taken. The H200
# calibration measured them at 0.19 GiB (context.CUDA_CONTEXT_BYTES less context.CONTEXT_BEFORE_CUBLAS), more than
# NON_TORCH_BASE (0.10 GiB, "cuBLAS/cuDNN handles"), so all of NON_TORCH_BASE moves out (budgeted_non_torch).
CUBLAS_BEFORE_SNAPSHOT = (0, 33)


def _vllm(inf: Inference) -> str:
    return f"vllm {inf.engine_version}" if inf.engine_version else "vllm"


def budgeted_non_torch(inf: Inference, non_torch: int) -> int:
    """The non-torch memory vLLM's profile counts inside the KV cache's budget: all of it before CUBLAS_BEFORE_SNAPSHOT,
    less NON_TORCH_BASE (cuBLAS's handles, now in the baseline) from it."""
    if inf.engine == "vllm" and not inf.vllm_before(CUBLAS_BEFORE_SNAPSHOT):
        return max(0, non_torch - NON_TORCH_BASE)
    return non_torch


def init_refusal(inf: Inference, total: int, util: float, held: int) -> str | None:
    """request_memory (INIT_FREE_CHECK): the memory free at init_device (total less `held`, the CUDA context and, from
    NCCL_BEFORE_SNAPSHOT, NCCL's buffers) must cover util x total."""
    if inf.vllm_before(INIT_FREE_CHECK):
        return None
    requested = util * total
    if total - held >= requested:
        return None
    return (f"{_vllm(inf)} would refuse to start: at start-up {(total - held) / GiB:.2f} GiB of "
            f"{total / GiB:.2f} GiB are free (the CUDA context and NCCL hold {held / GiB:.2f} GiB), less than "
            f"gpuMemoryUtilization {util:g} x total = {requested / GiB:.2f} GiB (vLLM: \"Free memory on device ... is "
            "less than desired GPU memory utilization\"); lower gpuMemoryUtilization")


def warmup_refusal(inf: Inference, util: float, total: int, budget: int, activations: int, graphs: int,
                   sampler: int, outside: int, graphs_outside: bool, v1: bool) -> str | None:
    """After the cache is allocated the device has total - budget - `outside` + the profile's freed `activations`;
    the graph pool (when `graphs_outside` the budget) and, on V1, the sampler's warm-up (after the capture; before it
    under the new runner from 0.30.0, sampler.V2_WARMUP_BEFORE_CAPTURE) must fit there. V0's
    _warm_up_model (vllm/worker/worker.py, read in 0.6.4) captures the graphs and runs nothing after them."""
    need = (graphs if graphs_outside else 0) + (sampler if v1 else 0)
    free = total - budget - outside + activations
    if need <= free:
        return None
    parts = ([f"the CUDA graphs ({graphs / GiB:.2f} GiB)"] if graphs_outside else []) + (
        [f"the sampler's warm-up ({sampler / GiB:.2f} GiB)"] if v1 else [])
    where = "at CUDA graph capture" if graphs_outside and graphs > free else "warming up the sampler"
    return (f"{_vllm(inf)} would die {where}: {' and '.join(parts)} need "
            f"{need / GiB:.2f} GiB, more than the {max(free, 0) / GiB:.2f} GiB left once the KV cache is allocated "
            f"(1 - gpuMemoryUtilization {util:g} of the GPU and the profile run's freed "
            f"activations, less {outside / GiB:.2f} GiB the budget never counts: CUDA context, NCCL, before 0.27.0 "
            "the new runner's sampler state); lower gpuMemoryUtilization or maxNumSeqs"
            + (", or set cudaGraphs: false" if graphs_outside else ""))
