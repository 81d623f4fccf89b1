"""What torchtitan's MoE layers keep for the backward, per GPU, beyond activations.py's count of the experts'
matmul inputs and outputs (issue 22; read at torchtitan 8ec37d2, October 2, 2025, and 5fb7cc2, October 15, 2025).

torchtitan/models/moe.py (torchtitan/models/moe/moe.py from 5fb7cc2), MoE.forward, for each of a rank's T tokens:
- TokenChoiceTopKRouter: `scores = self.gate(x)`, then `F.softmax(scores.to(torch.float32))` (or sigmoid), whose fp32
  output [T, num_experts] the backward reads (ROUTER_SCORE_BYTES a score); `scores.gather(dim=1, index=...)` and
  TokenReorderer's `top_scores.view(-1)[token_indices_experts_sorted]` save int64 indices of the top-k copies, and
  the gather / scatter_add of the routed tokens save the [T*k] int64 token indices (INDEX_BYTES, three of them),
- GroupedExperts (`_run_experts_grouped_mm`): x (the permuted copies), w1's output, silu's output, w3's output and
  their product, each of the padded rows (activations.py's routed term, one copy a row),
- `routed_output.to(torch.float32) * top_scores_experts_sorted.reshape(-1, 1)` (score_before_experts False, every
  DeepSeek-V3 flavor in torchtitan/models/deepseek_v3/__init__.py; with True the same product is taken of the routed
  input): the multiply saves the fp32 copy of every routed copy for the scores' gradient, 4 bytes an element of
  [T*k, dim]; the `.to(x.dtype)` result goes to scatter_add, whose backward needs only the index. Under torch.compile
  the partitioner keeps the 16-bit routed output instead (the upcast is pointwise, recomputed): 2 bytes.
- the token groups padded for grouped_mm (torchtitan/distributed/expert_parallel.py, expert_parallel wrapper at
  8ec37d2; torchtitan/models/moe/utils.py _permute from 5fb7cc2): `padded_max_len = _round_up(x.shape[0] +
  num_local_experts * TOKEN_GROUP_ALIGN_SIZE_M, TOKEN_GROUP_ALIGN_SIZE_M)` rows go through the grouped mms, so each
  layer keeps num_local_experts * 8 rows more than the routed copies (TOKEN_GROUP_ALIGN_SIZE_M 8 for bf16).

Expert parallel (ExpertParallel._token_dispatch / _token_combine): all_to_all_single_autograd sends each rank's
T*k routed copies and receives the copies routed to its local experts; balanced routing (what is modelled) receives
T*k again, so the experts' saved tensors are the same as without it. Eager, the two all-to-all outputs are not saved
(the collective's backward needs only the splits). Under torchtitan's per-op selective AC they are:
torchtitan/models/deepseek_v3/infra/parallelize.py `_op_sac_save_list` holds
`torch.ops._c10d_functional.all_to_all_single.default`, so the dispatched [T*k, dim] and the combined [T*k, dim]
16-bit tensors are cached for the backward in every MoE layer (EP_SAC_BUFFERS).

Per-op SAC with flex attention (every DeepSeek-V3 flavor, use_flex_attn True): torchtitan/distributed/
activation_checkpoint.py `_apply_op_sac_to_transformer_block_with_flex` does not wrap the block: a MoE block's `moe`
gets per-op SAC and its `attention` full AC when the model is not compiled (per-op SAC when it is); a dense block
gets per-op SAC on its feed_forward and full AC on its attention (one SAC over the whole block when compiled). The
norms and the residual stay outside any checkpoint. `_custom_policy` saves the outputs of the ops in the save list
(aten.mm, flex_attention, the collectives above), every second aten.mm recomputed, the count restarting per wrapped
module; torch._grouped_mm is not in the list, so the routed experts are recomputed. In a MoE module the mm order
is router.gate (saved), then the shared experts' w1 (not), w3 (saved), w2 (not).

Not modelled: unbalanced routing (a rank's experts may receive more than T*k copies; torchtitan's aux-loss-free
expert_bias only evens the counts over steps), the all-to-all send/receive buffers alive during one layer's forward,
and expert tensor parallel. FSDP over dp_shard_mod_ep (each block gathers its EP-local experts only) is counted by
fsdp.fsdp2_gathered_layer_params.
"""

from __future__ import annotations

from rackfit.estimator.activations import ACT_BYTES, attention_dims
from rackfit.estimator.params import mlp_params
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch
from rackfit.spec import Training

ROUTER_SCORE_BYTES = 4       # the fp32 softmax/sigmoid output, one a token and expert
INDEX_BYTES = 8              # int64 indices
ROUTING_INDEX_TENSORS = 3    # the top-k gather's index, the reorderer's sort order, the routed token indices
SCORE_COPY_EAGER_BYTES = 4   # routed_output.to(torch.float32), saved by the scoring multiply
TOKEN_GROUP_ALIGN_SIZE_M = 8  # torchtitan's default (bf16); fp8 16, mxfp8 32
EP_SAC_BUFFERS = 2           # the dispatch and combine all_to_all_single outputs, cached by per-op SAC
FUSED_NORM_RSTD_BYTES = 4    # nn.RMSNorm's fused kernel: one fp32 rstd a token
# gpt-oss's clamped SwiGLU (ModelArch.swiglu_limit), eager: expert-width tensors a routed copy keeps beyond a plain
# SwiGLU's gate, up, act and product (clamped_swiglu_elements)
CLAMPED_SWIGLU_EXTRA = 3


def applies(a: ModelArch, titan: bool, t: int) -> bool:
    """torchtitan's MoE model code under FSDP2 (`titan`: framework_activations.torchtitan), without tensor parallel
    (the expert-tensor-parallel layouts are not modelled here)."""
    return a.is_moe and titan and t == 1


def local_experts(a: ModelArch, layout: Layout) -> int:
    """Routed experts on one rank: all of them, or num_experts / expert-parallel degree (ExpertParallel's Shard(0))."""
    return max(a.num_experts // max(layout.expert, 1), 1)


def routing_bytes(a: ModelArch, tr: Training) -> float:
    """Bytes a token and MoE layer that the router, the reorderer and the scoring multiply keep (module docstring),
    beyond the experts' matmul tensors activations.py counts."""
    k, h = a.num_experts_per_token, a.hidden_size
    score_copy = ACT_BYTES if tr.compile else SCORE_COPY_EAGER_BYTES
    return ROUTER_SCORE_BYTES * a.num_experts + ROUTING_INDEX_TENSORS * INDEX_BYTES * k + score_copy * k * h


def clamped_swiglu(a: ModelArch, tr: Training) -> bool:
    """Whether the routed experts run gpt-oss's clamped SwiGLU eager (clamped_swiglu_elements)."""
    return bool(a.swiglu_limit) and a.gated_mlp and not tr.compile


def clamped_swiglu_elements(a: ModelArch, tr: Training) -> int:
    """Expert-width elements a routed copy keeps in gpt-oss's experts beyond a plain SwiGLU, eager.

    torchtitan/models/gpt_oss/moe.py (read at b5bcd76c6, August 2026, and 1690e0ae, May 2026) GptOssGroupedExperts:
    `h_RG = grouped_mm(x, mlp1) + b1_RG` (the gate and linear halves interleaved, 2F wide), then `swiglu(h_RG)`:
    `x_glu, x_linear = x[..., ::2], x[..., 1::2]`; `x_glu.clamp(max=limit)` and `x_linear.clamp(-limit, limit)`
    save their input (views of the 2F output, which stays alive) and each write a new F-wide tensor; `out_glu =
    x_glu * torch.sigmoid(alpha * x_glu)`: sigmoid saves its output, the multiply both factors (the clamped gate
    and the sigmoid); `torch.addcmul(out_glu, out_glu, x_linear)` saves out_glu and the clamped linear half; its
    output is mlp2's grouped_mm input. Kept: x (D), the 2F output, the clamped gate, the sigmoid, out_glu, the clamped
    linear half and the product (F each) - D + 7F, where a plain SwiGLU (w1 and w3 outputs, silu's output, the
    product) keeps D + 4F: three F-wide tensors more. Compiled, Inductor fuses the chain (not counted here)."""
    return CLAMPED_SWIGLU_EXTRA * a.moe_intermediate_size if clamped_swiglu(a, tr) else 0


def routed_row_bytes(a: ModelArch, tr: Training) -> int:
    """Bytes a row through the routed experts' grouped mms keeps: its input, w1's and w3's outputs, silu's output
    and the product (silu's recomputed when compiled), and gpt-oss's clamped SwiGLU's three more eager."""
    kept = (3 if tr.compile else 4) if a.gated_mlp else 2
    return (a.hidden_size + kept * a.moe_intermediate_size + clamped_swiglu_elements(a, tr)) * ACT_BYTES


def padding_bytes(a: ModelArch, tr: Training, layout: Layout) -> int:
    """Bytes one MoE layer keeps for the rows padded onto the token groups (num_local_experts * 8 rows, each as a
    routed copy, routed_row_bytes)."""
    return local_experts(a, layout) * TOKEN_GROUP_ALIGN_SIZE_M * routed_row_bytes(a, tr)


def hybridep_buffer_bytes(a: ModelArch, tr: Training, layout: Layout, tokens: int) -> int:
    """Bytes one MoE layer keeps for the rows of HybridEP's non-blocking dispatch buffer beyond its `tokens` x top-k
    routed copies (training.hybridepCapacityFactor). Without a device-to-host sync the permuted-token buffer is sized
    before the routing is known: num_tokens x ep x min(num_local_experts, top_k) x capacity_factor rows
    (torchtitan/distributed/deepep/hybridep.py, _num_permuted_tokens_for_non_blocking, read at aa1d37414^, June
    2026; 1.0 "sizes for the worst case (every token routed to every local expert)"), and the routed experts'
    tensors are that many rows (FusedGroupedExperts' offset-aware kernels, PR 3659, skip the unused rows' compute,
    not their memory). 0 without it or expert parallel."""
    cf = tr.hybridep_capacity_factor
    if not cf or layout.expert <= 1:
        return 0
    k = a.num_experts_per_token
    rows = int(tokens * layout.expert * min(local_experts(a, layout), k) * cf)
    return max(rows - tokens * k, 0) * routed_row_bytes(a, tr)


def eager_extra_bytes(a: ModelArch, tr: Training, layout: Layout, tokens: int) -> float:
    """Bytes a token and layer (averaged over all layers, as activations.py's count) that torchtitan's MoE layers
    keep without checkpointing beyond activations.py's count: routing_bytes, padding_bytes and hybridep_buffer_bytes
    of each MoE layer, and gpt-oss's clamped SwiGLU's extra tensors of each routed copy (clamped_swiglu_elements)."""
    rows = padding_bytes(a, tr, layout) + hybridep_buffer_bytes(a, tr, layout, tokens)
    clamped = a.num_experts_per_token * clamped_swiglu_elements(a, tr) * ACT_BYTES
    per_moe = routing_bytes(a, tr) + clamped + rows / max(tokens, 1)
    return per_moe * a.moe_layers / a.num_layers


SCORE_GRAD_BYTES = 4         # the scoring's gradients are fp32, as its product
SCORE_MUL_GRAD_BUFFERS = 3   # the incoming gradient, the routed copies' and the scores' before their reduction


def scoring_backward_bytes(a: ModelArch, tr: Training, layout: Layout) -> float:
    """Bytes a token that an eager MoE layer's backward holds, at its scoring of the routed outputs, beyond the
    layer's saved tensors (the `recompute` count): the moment of its backward when the most is alive.

    Read at torchtitan 8ea2b961b (June 2026; the same form at b109f7d71, f738a03bf and 951f6ff48, 2025, and from PR
    2775, 8bc267dea, April 6, 2026): with score_before_experts False (every DeepSeek-V3 and Qwen3 flavor) the combine
    computes `(routed_output_RD.to(torch.float32) * topk_scores_experts_sorted_N.reshape(-1, 1)).to(dtype)` and
    scatter-adds it into the tokens (models/common/token_dispatcher.py `combine`, after the all-to-all back; the
    scatter-add's backward is a gather, torchtitan/ops/scatter_add.py). Backward, node by node (autograd runs the
    later-created node first, so the shared experts' backward, created after the routed path or consumed after it,
    runs before and frees their saved tensors; their input's 16-bit gradient waits in the input buffer): the gather
    makes the 16-bit gradient of the N = T x top-k copies, `_to_copy`'s backward casts it to fp32 [N, dim] (the
    16-bit one freed once the node returns), and MulBackward0 (tools/autograd/derivatives.yaml `mul.Tensor`:
    `mul_tensor_backward(grad, other)` for each input) writes `grad * scores` [N, dim] and `grad * routed` [N, dim]
    in fp32 before the engine's validate_outputs sums the second to the scores' [N, 1] and release_variables frees
    the saved fp32 copy: three fp32 [N, dim] buffers beside everything the layer saved - 12 bytes a routed element,
    10 GiB more than the saved count on DeepSeek-V3 16B at 65,536 tokens a rank. The grouped mms' backward that
    follows holds less (16-bit [N, dim] and [N, hidden] gradients, each node freeing its saved inputs).

    torchtitan 0.2.1-0.2.2 (Training.torchtitan_bmm_scores) scored by `torch.bmm(top_scores.reshape(-1, 1, k),
    routed_output_unsorted.float())` instead (models/common/moe/moe.py at 72f89d206^), created after the shared
    experts: its backward runs first and writes one fp32 [T, k, dim] gradient (the scores' is [T, 1, k]) with every
    saved tensor still alive.

    0 when compiled (Inductor fuses the product's backward and the scores' reduction, no [N, dim] buffer), for
    Llama 4 (score_before_experts True: the product is taken at the dispatch, whose backward runs after the grouped
    mms' have freed the routed tensors; told by its chunked attention, as activations.routed_copies) and for
    HybridEP (hybridepCapacityFactor: its combine kernel applies the scores). DeepEP and blocking HybridEP, which
    also score inside their kernels, cannot be stated and are counted as the all-to-all."""
    if tr.compile or a.attention_chunk_size or tr.hybridep_capacity_factor:
        return 0.0
    k, h = a.num_experts_per_token, a.hidden_size
    if tr.torchtitan_bmm_scores:
        return SCORE_GRAD_BYTES * k * h
    shared_saved = a.num_shared_experts * (4 if a.gated_mlp else 2) * a.moe_intermediate_size * ACT_BYTES
    return max(SCORE_MUL_GRAD_BUFFERS * SCORE_GRAD_BYTES * k * h + ACT_BYTES * h - shared_saved, 0.0)


def sequence_parallel_routing(a: ModelArch, titan: bool, layout: Layout) -> bool:
    """torchtitan's MoE under tensor and expert parallel with expert_tensor_parallel_degree 1 (its default):
    apply_moe_ep_tp (models/llama4/parallelize.py at 72f89d206^; the DeepSeek-V3 models call it) all-gathers the MoE
    input to every tensor rank (PrepareModuleInputOutput, Shard(1) -> Replicate), runs the router on the whole
    sequence (`moe.router.gate`: NoParallel) and, "if TP is borrowed for EP", splits the routed copies over the tensor
    ranks (ReordererSequenceParallel: each takes bs*slen/t tokens' top-k)."""
    return a.is_moe and titan and layout.tensor > 1 and layout.expert > 1


def sequence_parallel_routing_bytes(a: ModelArch, tr: Training, layout: Layout, tokens: int) -> float:
    """Bytes a token (of `tokens`, the whole sequence) and layer, averaged over the layers as eager_extra_bytes, that
    torchtitan's MoE keeps under sequence_parallel_routing beyond the experts' matmul tensors (activations.py's routed
    term, split over the tensor ranks) and the gathered input (the norm's output, whole): the router's fp32 scores
    and top-k index of every token (the router runs on the whole sequence), the reorderer's two indices of this
    rank's copies, the padded token-group rows, and the scores' upcast copy of the routed outputs - at 0.2.1-0.2.2
    (Training.torchtitan_bmm_scores) MoE.forward scatters this rank's outputs into `routed_output_unsorted =
    torch.zeros((bs * slen * top_k, dim))` and the bmm with the scores saves its `.float()` (eager; the 16-bit tensor
    compiled) for the scores' gradient: the whole sequence's top-k copies on every tensor rank; else the
    scatter-add form's copy of this rank's copies."""
    k, h, t = a.num_experts_per_token, a.hidden_size, layout.tensor
    score_copy = (ACT_BYTES if tr.compile else SCORE_COPY_EAGER_BYTES) * k * h / (1 if tr.torchtitan_bmm_scores else t)
    router = ROUTER_SCORE_BYTES * a.num_experts + INDEX_BYTES * k
    reorder = (ROUTING_INDEX_TENSORS - 1) * INDEX_BYTES * k / t
    per_moe = router + reorder + score_copy + padding_bytes(a, tr, layout) / max(tokens, 1)
    return per_moe * a.moe_layers / a.num_layers


def flex_sac(a: ModelArch, titan: bool, t: int) -> bool:
    """Per-op SAC wraps modules, not blocks: torchtitan's DeepSeek-V3 (MLA, flex attention in every flavor)."""
    return applies(a, titan, t) and a.is_mla


def _saved_mms(widths: list[float]) -> float:
    """Elements a token of the mm outputs `_custom_policy` saves: the 1st, 3rd, ... mm of a wrapped module."""
    return sum(w for i, w in enumerate(widths) if i % 2 == 0)


def mla_attention_sac_elements(a: ModelArch) -> float:
    """Elements a token that per-op SAC keeps in torchtitan's MLA attention (compiled model: the attention is
    SAC-wrapped). mm order (torchtitan/models/deepseek_v3/model/model.py Attention.forward): wq (or wq_a, wq_b),
    wkv_a, wkv_b, wo; then flex_attention's output."""
    q, _ = attention_dims(a)
    heads = a.num_attention_heads
    mms = [a.q_lora_rank, q] if a.q_lora_rank else [q]
    mms += [a.kv_lora_rank + a.qk_rope_head_dim, heads * (a.qk_nope_head_dim + a.v_head_dim), a.hidden_size]
    return _saved_mms(mms) + heads * a.v_head_dim


def sac_layer_bytes(a: ModelArch, tr: Training, layout: Layout, all_to_all: bool = True) -> float:
    """Bytes a token and layer (averaged over the layers) that torchtitan's per-op SAC keeps in a DeepSeek-V3 model
    (module docstring): each block's two fused norms' inputs, outputs and rstd; a MoE layer's router logits and the
    shared experts' w3 output, and under expert parallel the two all-to-all outputs; a dense layer's w1 and w2
    outputs; the attention's saved mms and flex output (plus its fp32 log-sum-exp) only when the model is compiled
    (else full AC: nothing beyond its input, the norm's output). `all_to_all` False leaves out the cached
    all-to-all outputs (which the eager count does not hold: what the backward's recompute does not redo is the
    rest)."""
    h, k = a.hidden_size, a.num_experts_per_token
    norms = 2 * (2 * ACT_BYTES * h + FUSED_NORM_RSTD_BYTES)
    attention = 0.0
    if tr.compile:
        attention = ACT_BYTES * mla_attention_sac_elements(a) + 4 * a.num_attention_heads
    shared = a.num_shared_experts * a.moe_intermediate_size
    moe = _saved_mms([a.num_experts] + ([shared, shared, h] if shared else []))
    if layout.expert > 1 and all_to_all:
        moe += EP_SAC_BUFFERS * k * h
    dense = _saved_mms([a.intermediate_size, a.intermediate_size, h] if a.gated_mlp else [a.intermediate_size, h])
    per_moe = norms + attention + ACT_BYTES * moe
    per_dense = norms + attention + ACT_BYTES * dense
    return (per_moe * a.moe_layers + per_dense * (a.num_layers - a.moe_layers)) / a.num_layers


def grouped_shared_params(a: ModelArch, titan: bool, tr: Training, layout: Layout) -> int:
    """Elements of one MoE layer's shared-expert weights that FSDP2 leaves unsplit on a rank, 0 where it splits them.

    Before 0.2 (`torchtitanVersion`, Training.torchtitan_grouped_shared_experts) torchtitan's MoE built its shared
    experts as `GroupedExperts(dim, hidden_dim * n_shared_experts, num_experts=1)` (models/deepseek_v3/model/moe.py
    `MoE.__init__` at b109f7d71, August 1, 2025; experiments/llama4/model/moe.py alike): w1, w2, w3 of shape
    [1, dim, hidden]. FSDP2 shards dim 0 (torch/distributed/fsdp/_fully_shard/_fsdp_param.py `_init_sharded_param`:
    `chunks = _chunk_with_empty(param_data, shard_world_size, dim=0)`, `padded_sharded_size = chunks[0].size()  # 0th
    always padded`, `padded_sharded_param = param_data.new_zeros(padded_sharded_size)`): one row cannot be split, so
    every rank allocates the whole [1, dim, hidden] in the master dtype - rank 0 holding the row, the others zeros -
    and rank 0's DTensor shard is the whole weight, so its optimizer states are too (the others' local shards are
    empty). The gradients are views of the reduce-scatter output, padded alike (`_fsdp_collectives.py`
    `foreach_reduce`: dim 0 padded to a multiple of the world size), and each all-gather moves the padded shards: a
    block's all-gather output and reduce-scatter input hold `data` copies of these weights where one is used.
    torchtitan PR 1561 (7354848df, August 13, 2025) rewrote the shared experts as a FeedForward of nn.Linear
    ("FSDP's default dim-0 sharding ... will be inefficient"), which shards as any linear."""
    if not (applies(a, titan, layout.tensor) and a.num_shared_experts and tr.method == "full" and tr.fsdp != 1
            and layout.data > 1 and tr.torchtitan_grouped_shared_experts):
        return 0
    return a.num_shared_experts * mlp_params(a.hidden_size, a.moe_intermediate_size, a.gated_mlp)
