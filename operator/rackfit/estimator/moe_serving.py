"""vLLM's fused-MoE layer in the profile run's forward, by release (issue 22: MoE at tensor and expert parallel).

What one MoE layer holds on a rank while its experts run, read in vLLM's source:
- fused_experts_impl (vllm/model_executor/layers/fused_moe/fused_moe.py; read in 0.9.2, 0.10.1 and 0.11.0) takes
  M = min(tokens, VLLM_FUSED_MOE_CHUNK_SIZE) and allocates `cache13` (M x top_k x max(N, K): intermediate_cache1, the
  gate/up output, and intermediate_cache3, the down output, share it) and `intermediate_cache2` (M x top_k x N/2, the
  activation's output), N the gate/up width on this rank (2 x the expert width for gated MLPs) and K the hidden size,
  in the activations' dtype; Fp8MoEMethod.apply and UnquantizedFusedMoEMethod call it with inplace=True, so the output
  is written over the input (no out_hidden_states). With fp8 activations (W8A8 on Ada and later; Marlin's weight-only
  fp8 on Ampere quantizes nothing) moe_kernel_quantize_input makes an fp8 copy of each GEMM's input (M x K, then
  M x top_k x N/2) and, block-scaled, one fp32 scale per 128 values (per_token_group_quant_fp8).
- From engine_profile.MOE_WORKSPACE_HELD (0.14.0) the same experts run as a FusedMoEModularKernel whose workspaces
  are engine_profile.moe_workspace_bytes' two buffers, chunked by the same variable.
- VLLM_FUSED_MOE_CHUNK_SIZE's default (envs.py): 65,536 through 0.5.x (read in 0.5.3, 0.5.4), 32,768 from 0.6.0
  through 0.11.x (read in 0.6.0-0.11.2), 16,384 from 0.12.0 through 0.17.x (read in 0.12.0-0.17.0); 0.18.0, 0.19.0
  and 0.34.0 define no chunk (FUSED_MOE_CHUNK).
- Under data parallel with expert parallelism (`--data-parallel-size` with `--enable-expert-parallel`) every rank's
  MoE layer runs over the tokens of all data-parallel ranks: FusedMoE.forward_impl dispatches the hidden states and
  router logits before the experts (fused_moe/layer.py `do_naive_dispatch_combine` when dp_size > 1), by
  VLLM_ALL2ALL_BACKEND "naive" (NaiveAll2AllManager.naive_multicast: a (sum of tokens over DP) x hidden buffer, read in
  0.9.2-0.10.2) and from 0.11.0 "allgather_reducescatter" (AgRsAll2AllManager: all_gatherv of the same size; 0.19.0
  and 0.34.0 config/parallel.py default it too). The profile run's dummy batch is max_num_batched_tokens on every DP
  rank, so the experts see data x tokens (the pplx/DeepEP backends, which chunk, are opt-in and not modelled).
- The shared experts' output (DeepSeek-V2/V3, Qwen2-MoE: computed before the routed experts and added after) and the
  router's logits and top-k (topk_weights fp32, topk_ids and token_expert_indices int32, fused_topk) live beside them.
Left out: moe_align_block_size's index buffers (M x top_k + experts x (block - 1) int32, under 1 MiB here) and
DeepGEMM's contiguous layout (VLLM_USE_DEEP_GEMM, needs the deep_gemm package, which `pip install vllm` lacks).

Pure: no I/O.
"""

from __future__ import annotations

from rackfit.models import ModelArch
from rackfit.spec import Inference

ACT_BYTES = 2  # bf16/fp16 activations
FP8_GROUP = 128  # per_token_group_quant_fp8's group (the checkpoints' 128 x 128 weight blocks)
# (first release of the next default, chunk) pairs: the chunk applies below that release
FUSED_MOE_CHUNK = (((0, 6), 65536), ((0, 12), 32768), ((0, 18), 16384))
V1_DP_DISPATCH = (0, 8)  # V1 data parallel: the MoE layer's dispatch over DP ranks (V0 had no MoE data parallel)


def fused_moe_chunk(inf: Inference | None) -> int | None:
    """VLLM_FUSED_MOE_CHUNK_SIZE's default in the spec's release (FUSED_MOE_CHUNK); None: no chunking, or not vLLM."""
    if inf is None or inf.engine != "vllm":
        return None
    return next((chunk for until, chunk in FUSED_MOE_CHUNK if inf.vllm_before(until)), None)


def dispatched_tokens(inf: Inference | None, data: int, expert: int, tokens: int) -> int:
    """The tokens one rank's MoE layer runs over: every data-parallel rank's under vLLM V1 data parallel with expert
    parallelism (the dispatch before the experts), else the rank's own."""
    if (inf is None or inf.engine != "vllm" or inf.vllm_before(V1_DP_DISPATCH) or data <= 1 or expert <= 1):
        return tokens
    return tokens * data


def expert_width(a: ModelArch, tensor: int, expert: int) -> float:
    """A routed expert's width on one rank: whole under expert parallelism, else split over the tensor ranks."""
    return a.moe_intermediate_size / (1 if expert > 1 else tensor)


def gate_up_width(a: ModelArch, tensor: int, expert: int) -> float:
    """N: a routed expert's gate/up output width on one rank (2 x expert_width for gated MLPs)."""
    return (2 if a.gated_mlp else 1) * expert_width(a, tensor, expert)


def chunked_tokens(inf: Inference | None, tokens: int) -> int:
    """The M of the experts' buffers: `tokens` capped by the release's chunk (fused_moe_chunk)."""
    chunk = fused_moe_chunk(inf)
    return min(tokens, chunk) if chunk else tokens


def fused_experts_bytes(a: ModelArch, tensor: int, expert: int, m: int) -> int:
    """fused_experts_impl's cache13 and intermediate_cache2 for M = `m` tokens (chunked_tokens), before
    engine_profile.MOE_WORKSPACE_HELD: m x top_k x (max(N, K) + N / 2) in the activations' dtype."""
    if not a.is_moe:
        return 0
    k, top_k = a.hidden_size, a.num_experts_per_token
    n = gate_up_width(a, tensor, expert)
    return int(m * top_k * (max(n, k) + n / 2) * ACT_BYTES)


def fp8_input_bytes(a: ModelArch, tensor: int, expert: int, m: int) -> int:
    """With fp8 activations, moe_kernel_quantize_input's copies of both GEMMs' inputs for M = `m` tokens: m x K and
    m x top_k x N / 2 in fp8, each with one fp32 scale per FP8_GROUP values (per_token_group_quant_fp8)."""
    if not a.is_moe:
        return 0
    n = gate_up_width(a, tensor, expert)
    return int((m * a.hidden_size + m * a.num_experts_per_token * n / 2) * (1 + 4 / FP8_GROUP))


def moe_layer_extra_bytes(a: ModelArch, tensor: int, tokens: int, dispatched: int) -> int:
    """Beside the experts' buffers while they run: the dispatched hidden states and router logits when the layer runs
    over other ranks' tokens too, the router's logits and fused_topk's outputs, and the shared experts' output."""
    if not a.is_moe:
        return 0
    k, e = a.hidden_size, a.num_experts
    held = tokens * e * ACT_BYTES + dispatched * a.num_experts_per_token * (4 + 4 + 4)
    if dispatched > tokens:
        held += dispatched * (k + e) * ACT_BYTES
    if a.num_shared_experts:
        held += tokens * k * ACT_BYTES
    return int(held)
