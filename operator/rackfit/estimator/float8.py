"""Float8 training of the linear layers (`spec.training.float8`, `float8AllGather`): what it changes at the peak.

torchao (framework fsdp, torchtitan's `--model.converters float8`), read at pytorch/ao 36027d8 (August 2026; the same
code since v0.10): `convert_to_float8_training` swaps each nn.Linear for Float8Linear, whose autograd function
`matmul_with_hp_or_float8_args.forward` (torchao/float8/float8_linear.py) calls
`ctx.save_for_backward(input_hp, weight_hp_t)` -- the 16-bit input and weight, not their fp8 casts -- and casts both
to fp8 again in the backward (tensorwise: one fp32 scale a tensor; rowwise: one a row, the input's columns scaled
again for the weight gradient). The fp8 casts live only around each matmul, and the master weights, gradients (the
weight gradient comes back in 16 bits) and optimizer states are those of bf16 training: the peak does not move,
except where FSDP2 gathers the weights in fp8. With `enable_fsdp_float8_all_gather` the weight is a
WeightWithDynamicFloat8CastTensor (torchao/float8/fsdp_utils.py) whose `fsdp_pre_all_gather` casts the local fp32 shard
to fp8 and hands FSDP2 `float8_training_tensor._data` (1 byte an element); `fsdp_post_all_gather` wraps the gathered
uint8 buffer as a Float8TrainingTensor: every gathered block's Float8Linear weights hold 1 byte a parameter instead of
2 (Float8LinearConfig.__post_init__ allows it for tensorwise scaling only). The amax/scale state is one fp32 scalar a
linear (`precompute_float8_dynamic_scale_for_fsdp`): not counted. torchtitan converts every nn.Linear but the output
projection (its float8 filter_fqns default ["output"]); embeddings, norms and MoE's grouped experts stay 16-bit.

Transformer Engine (framework megatron, `--fp8-format hybrid`), read at NVIDIA/TransformerEngine d0067d0 (v2.18, August
2026): `_Linear.forward` (transformer_engine/pytorch/module/linear.py) quantizes its input itself and, before saving it,
drops the row-wise data the backward does not need (`inputmat.update_usage(rowwise_usage=False,
columnwise_usage=True)`; row-wise only where the input is all-gathered for the backward): each linear saves its input in
fp8, 1 byte an element (MXFP8 adds one e8m0 scale a 32). `quantize_weight` keeps the fp8 weight, with the column-wise
copy (Hopper's transpose, MXFP8's column-wise data) the backward uses, in `self._fp8_workspaces["weight"]` whenever
`is_first_microbatch` is not None, and Megatron-Core passes it (megatron/core/extensions/transformer_engine.py,
TELinear.forward: None only with --disable-parameter-transpose-cache): 2 bytes a linear parameter kept for the whole
run beside the 16-bit parameter buffer. With --fp8-param-gather (`fp8_model_init`) the parameters themselves are
Float8Tensors (1 byte, and their column-wise copy) in place of the 16-bit buffer and no workspace is cached.
"""

from __future__ import annotations

from rackfit.estimator.activations import ACT_BYTES, attention_dims
from rackfit.models import ModelArch
from rackfit.spec import Training

# MXFP8 (torchao's and Transformer Engine's MXFP8 recipe): one e8m0 scale byte a block of 32 elements along each copy
MX_BLOCK = 32


def active(tr: Training) -> bool:
    """The spec trains the linears in float8."""
    return tr.float8 not in (None, "none")


def element_bytes(tr: Training) -> float:
    """Bytes an fp8 element of one layout holds with its scale (tensorwise and rowwise: the scales are negligible)."""
    return 1 + (1 / MX_BLOCK if tr.float8 == "mxfp8" else 0)


def block_linear_params(a: ModelArch) -> int:
    """Weights of one decoder block's linear layers that float8 converts: the attention projections (q, k, v, o) and a
    dense MLP's (gate+up, down). MoE's routed experts are grouped weights, not nn.Linear (torchao's converter and
    torchtitan's filter leave them 16-bit), so a MoE block counts its attention only."""
    h = a.hidden_size
    q, kv = attention_dims(a)
    params = h * (q + kv) + q * h
    if not a.is_moe:
        fc1 = (2 if a.gated_mlp else 1) * a.intermediate_size
        params += h * fc1 + a.intermediate_size * h
    return params


def fsdp2_gathered_saving(a: ModelArch, tr: Training, tensor: int, blocks: int, compute_bytes: int) -> int:
    """Bytes fewer the gathered decoder blocks hold under torchao's float8 all-gather (framework fsdp, FSDP2):
    `blocks` gathered copies of a block (the default stream's and the copy-in pool's), each block's linear weights at
    1 byte instead of `compute_bytes`. 0 without `float8AllGather`."""
    if not (active(tr) and tr.float8_all_gather and tr.framework == "fsdp"):
        return 0
    return blocks * (block_linear_params(a) // tensor) * (compute_bytes - 1)


def fsdp2_block_weight(a: ModelArch, tr: Training, tensor: int, layer: int, compute_bytes: int) -> int:
    """One gathered block's bytes on this rank: `layer` parameters at `compute_bytes`, less the float8 all-gather's
    saving on its linear weights."""
    return layer * compute_bytes - fsdp2_gathered_saving(a, tr, tensor, 1, compute_bytes)


def te_weight_bytes(a: ModelArch, tr: Training, layers: int, tensor: int, compute_bytes: int) -> int:
    """Bytes Transformer Engine adds to Megatron's 16-bit parameter buffer on one GPU: `layers` blocks' linear weights
    split over `tensor`. Without --fp8-param-gather the cached fp8 weight workspace (row-wise and column-wise copies,
    2 bytes a parameter, MXFP8 with their scales); with it the fp8 parameters and their column-wise copy replace the
    16-bit ones (2 bytes against `compute_bytes`: nothing more in tensorwise, the scales in MXFP8)."""
    if not (active(tr) and tr.framework == "megatron"):
        return 0
    return te_cached_bytes(tr, layers * block_linear_params(a) // tensor, compute_bytes)


def te_cached_bytes(tr: Training, linear: int, compute_bytes: int) -> int:
    """Bytes Transformer Engine keeps for `linear` weight elements of this GPU under Megatron's float8 (see
    te_weight_bytes): the cached row-wise and column-wise fp8 copies, or with --fp8-param-gather what the fp8
    parameters add to the 16-bit buffer. 0 without float8 or outside Megatron."""
    if not (active(tr) and tr.framework == "megatron"):
        return 0
    cached = 2 * element_bytes(tr)
    if tr.float8_all_gather:
        return int(linear * max(cached - compute_bytes, 0))
    return int(linear * cached)


def sac_abs_bytes(a: ModelArch, tr: Training, t: int, tokens: int) -> float:
    """Bytes a token and layer that torchtitan's per-op SAC kept, eager, for torchao's tensorwise or rowwise casts
    while its save list held aten.abs.default (torchtitanVersion 0.0: spec.TORCHTITAN_SAC_WITHOUT_ABS; the list of
    torchtitan/parallelisms/parallelize_llama.py at d4c86e375, January 30, 2025). torchao 0.8.0 (January 2025)
    Float8Linear.forward casts its input and its weight to fp8 in every forward (cast_input_to_float8,
    get_weight_scale; hp_tensor_to_float8_dynamic / tensor_to_scale), and float8_utils.tensor_to_amax takes
    `torch.max(torch.abs(x))` (rowwise: `torch.amax(torch.abs(x), dim=...)`): the policy caches each abs output, a
    16-bit copy of the linear's input and of its gathered weight (FSDP2's bf16 unsharded parameter), until the block's
    backward. Per block: q, k and v each abs their (shared) input, wo its attention output, w1 and w3 the MLP input,
    w2 the activation output; the weights are block_linear_params, a per-block constant spread over the tokens. With
    enable_fsdp_float8_all_gather the weight arrives already in fp8 (tensor_already_casted_to_fp8), no abs of it.
    Under torch.compile the abs feeds the max reduction inside one fused kernel and is not kept (T1's compiled
    float8 run of December 2024 logged no more than bf16; T438 compiled). Tensor parallel: the column-wise linears'
    inputs are the whole sequence's, the row-wise ones split over t, the weights split over t."""
    if not (tr.float8 in ("tensorwise", "rowwise") and tr.framework == "fsdp" and not tr.compile
            and tr.activation_checkpointing == "selective" and tr.torchtitan_sac_saves_abs):
        return 0.0
    h = a.hidden_size
    q, _kv = attention_dims(a)
    inputs = 3 * h + q / t   # wq, wk, wv: the normed block input each; wo: the attention output
    if not a.is_moe:         # a MoE block's routed experts are grouped weights, not Float8Linear
        inputs += ((2 * h) if a.gated_mlp else h) + a.intermediate_size / t
    weights = 0 if tr.float8_all_gather else block_linear_params(a) / t
    return ACT_BYTES * (inputs + weights / max(tokens, 1))


def te_saved_input_delta(a: ModelArch, tr: Training) -> tuple[float, float]:
    """(replicated, split over tensor) bytes a token a layer keeps more (negative: fewer) when Transformer Engine saves
    each linear's input in fp8, against megatron_layer_bytes' 16-bit count: the QKV and fc1 inputs (the norms' outputs,
    h each) and fc2's (the activation output) drop from 2 bytes to one fp8 element; the projection's fp8 input is a
    second copy, since the attention kernel keeps its 16-bit output for its own backward."""
    if not (active(tr) and tr.framework == "megatron"):
        return 0.0, 0.0
    q, _kv = attention_dims(a)
    if a.is_moe:
        inter = a.num_experts_per_token * a.moe_intermediate_size + a.num_shared_experts * a.moe_intermediate_size
    else:
        inter = a.intermediate_size
    fp8 = element_bytes(tr)
    replicated = 2 * a.hidden_size * (fp8 - ACT_BYTES)
    split = q * fp8 + inter * (fp8 - ACT_BYTES)
    return replicated, split


def notes(tr: Training) -> list[str]:
    """What the estimate says about float8 training."""
    if not active(tr):
        return []
    if tr.framework == "fsdp":
        gather = ("the gathered blocks' linear weights in fp8 (enable_fsdp_float8_all_gather)" if tr.float8_all_gather
                  else "the weights gathered in 16 bits")
        return [f"float8 {tr.float8} (torchao Float8Linear): the linears save their 16-bit inputs as in bf16; {gather}"]
    gather = "fp8 parameters (--fp8-param-gather)" if tr.float8_all_gather else "cached fp8 weights and transposes"
    return [f"float8 {tr.float8} (Transformer Engine): linear inputs saved in fp8; {gather}"]
