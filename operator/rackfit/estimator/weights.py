"""Weight bytes per GPU, module by module, quantisation scales included.

What each module stores comes from `rackfit.models.quantization`: a pre-quantized checkpoint's
`quantization_config` when the architecture carries one (`ModelArch.quantization`), else the spec's
`precision` on every decoder linear layer with embeddings, lm_head, norms and MoE routers 16-bit (GPTQ/AWQ,
bitsandbytes, FP8 and MXFP4 checkpoints all keep those; MXFP4, as gpt-oss, compresses only the routed
experts). Attention, dense MLPs and shared experts split over tensor parallel (MLA's q_a/kv_a down-projections
stay whole under vLLM and SGLang), routed experts over expert parallel (else tensor), routers are replicated (vLLM's
`ReplicatedLinear`). Under vLLM a rank also holds what it builds at load beside the checkpoint's tensors: the rotary
cos/sin cache and, for a quantized MLA up-projection, its 16-bit W_UK_T/W_UV copies.
"""

from __future__ import annotations

from functools import lru_cache

from rackfit.estimator.params import ParamCounts, indexer_params
from rackfit.estimator.result import Layout
from rackfit.estimator.sglang import attention_tensor, dp_attention, vocab_shards
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.models.quantization import (
    NF4_FP32_ABSMAX,
    PRECISION_FORMATS,
    Quantization,
    dequantized_experts,
    uniform,
)
from rackfit.spec import Inference

# Bytes per parameter of a compressed matrix, scales included (docs/reference/memory-model.md §1.1);
# the formats are in rackfit/models/quantization.py.
BYTES_PER_PARAM: dict[str, float] = {
    name: f.value_bytes + (f.scale_bytes / (f.rows * f.cols) if f.rows and f.cols else 0.0)
    for name, f in PRECISION_FORMATS.items()
}


# vLLM's Mxfp4MoEMethod.create_weights (quantization/mxfp4.py) pads each rank's expert width (the intermediate size
# per tensor rank, or the whole one under expert parallelism) and, for some backends, the hidden size, before it
# allocates w13 (E, 2 x width, hidden / 2), w2 (E, hidden, width / 2) and their E8M0 scales (one per 32 along the
# same axes): every expert tensor grows by (padded width / width) x (padded hidden / hidden). The padding is the
# backend's (get_mxfp4_backend), which follows the GPU:
# - Marlin (compute capability below 9.0, and Hopper when the triton_kernels package is absent, as a plain
#   `pip install vllm` leaves it: vLLM 0.10.1 on H100 logged "Weight-only FP4 compression will be used leveraging
#   the Marlin kernel"): "The moe marlin kernel requires that for each linear n % 256 == 0 and k % 128 == 0":
#   width to 128, hidden to 256. gpt-oss-120b at tensor 1: 2880 x 2880 stored as 2944 x 3072 (+9.0%).
# - Triton (Hopper with triton_kernels, from MXFP4_TRITON_FROM below): width to 64 (2 x the MX block, "to hold
#   non-uniform sharded tensor as well as swizzling") and the scales kept twice (`_triton_hopper_layout`);
#   before that release Marlin's padding, the larger, is taken for Hopper.
# - FlashInfer on Blackwell (SM100_FI_MXFP4_BF16, the default there with FlashInfer): width and hidden to 256.
# Other runtimes: `mxfp4_align` (transformers, the training frameworks), `mxfp4_sglang_expert_factor` (SGLang).
MXFP4_WIDTH_ALIGN = 64
MXFP4_MARLIN_ALIGN = (128, 256)       # (width, hidden)
MXFP4_FLASHINFER_ALIGN = (256, 256)
# From 0.12.0 the vllm wheel ships triton_kernels (vllm/third_party/triton_kernels; utils/import_utils.py falls back to
# it), so get_mxfp4_backend (quantization/mxfp4.py, read in 0.12.0) takes Triton on Hopper: "triton_kernels are only
# confirmed to work on SM90 and SM100", torch 2.8 or newer, VLLM_MXFP4_USE_MARLIN unset. Before 0.12.0 a plain `pip
# install vllm` had no triton_kernels and took Marlin (S12, 0.10.1), the vllm/vllm-openai image had them (Triton):
# Marlin's padding, the larger, is kept for those releases.
MXFP4_TRITON_FROM = (0, 12)
# Triton's process_weights_after_loading (read in 0.11.0 and 0.14.1) swizzles values and scales into new tensors
# (mxfp4_utils.py _swizzle_mxfp4) and deletes the unswizzled values but not w13_weight_scale/w2_weight_scale: the E8M0
# scales are held twice, the swizzled copy with its rows padded to 256 (triton_kernels HopperMXScaleLayout:
# SWIZZLE_ALIGN_M = 2 x num_warps 8 x 2 x 8); HopperMXValueLayout pads the packed values to 16 x 32 bytes only, which
# gpt-oss's shapes already are (0.17.0-0.21.x: to 64 x 64 first, MXFP4_TRITON_VALUE_PREPAD below). The expert width
# per rank is rounded to 64 (create_weights), the hidden size not.
MXFP4_TRITON_SCALE_ROWS = 256
# the OCP MX block, as models/quantization.py stores MXFP4: one E8M0 scale (1 B) per 32 values
MXFP4_BLOCK = PRECISION_FORMATS["mxfp4"].cols
MXFP4_SCALE_BYTES_PER_VALUE = PRECISION_FORMATS["mxfp4"].scale_bytes / MXFP4_BLOCK


def mxfp4_align(runtime: str | None, architecture: str | None, inference: Inference | None = None
                ) -> tuple[int, int]:
    """(width, hidden) alignment of an MXFP4 checkpoint's routed experts as `runtime` stores them on a GPU of
    `architecture` (None: not known, taken as Marlin's, the Ampere/Ada/Hopper case); `inference` names the vLLM
    release (Blackwell without FlashInfer: `mxfp4_vllm_backend`)."""
    if runtime != "vllm":  # transformers: the checkpoint's shapes (gpt-oss's 2880 is 45 x 64); SGLang: weight_bytes
        return MXFP4_WIDTH_ALIGN, 1  # takes mxfp4_sglang_expert_factor
    if architecture == "blackwell" and mxfp4_vllm_backend(architecture, inference) == "flashinfer":
        return MXFP4_FLASHINFER_ALIGN
    return MXFP4_MARLIN_ALIGN


# Blackwell without FlashInfer (vLLM 0.10.2-0.11.0, quantization/mxfp4.py get_mxfp4_backend): the SM100 FlashInfer
# backends need has_flashinfer(), which `pip install vllm` left out until 0.11.1 (the wheels' METADATA: 0.10.2 and
# 0.11.0 `flashinfer-python; extra == "flashinfer"`, 0.11.1 `flashinfer-python==0.5.2`), and without it "If FlashInfer
# is not available, try either Marlin or Triton": Marlin there, triton_kernels not being installed before 0.12.0.
# 0.10.1's Mxfp4MoEMethod._should_use_marlin never took Marlin on SM100 (its wheel for gpt-oss carried FlashInfer).
# A spec that says flashinfer_sampler: true has FlashInfer installed (the images): FlashInfer there too.
MXFP4_BLACKWELL_MARLIN = ((0, 10, 2), (0, 11, 1))


def mxfp4_vllm_backend(architecture: str | None, inference: Inference | None) -> str:
    """The MXFP4 MoE backend vLLM's get_mxfp4_backend (select_mxfp4_moe_backend from the fused_moe oracle) picks
    on a GPU of `architecture` in `inference`'s release: "flashinfer" (Blackwell), "triton" (Hopper, from
    MXFP4_TRITON_FROM) or "marlin" (below Hopper; Hopper before MXFP4_TRITON_FROM; Blackwell without FlashInfer)."""
    if architecture == "blackwell":
        start, end = MXFP4_BLACKWELL_MARLIN
        if (inference is not None and inference.vllm_before(end) and not inference.vllm_before(start)
                and not inference.flashinfer_sampler):
            return "marlin"
        return "flashinfer"
    return "triton" if mxfp4_triton("vllm", architecture, inference) else "marlin"


# MXFP4 checkpoints (gpt-oss) outside vLLM.
# SGLang (python/sglang/srt/layers/quantization/mxfp4.py, Mxfp4MoEMethod; server_args.py picks the MoE runner for
# GptOssForCausalLM when --moe-runner-backend is auto):
# - Blackwell (SM100): flashinfer_mxfp4 (trtllm-gen); create_weights rounds the width and the hidden size up to 256,
#   as vLLM's FlashInfer backend does: MXFP4_FLASHINFER_ALIGN.
# - otherwise with expert parallel 1 and the triton_kernels package (SGLang's images carry it): triton_kernel; the
#   width is rounded up to the MX block (32: "make intermediate_size_per_partition_after_pad the same as the
#   per_rank_intermediate_size during weight loading") and _swizzle_mxfp4 re-lays the MXFP4 bytes out for the GPU
#   (triton_kernels' Hopper layout tiles them by at most 32 bytes a side: not counted). Ampere and Ada take this
#   path too (SGLang's Mxfp4Config.get_min_capability is 80).
# - otherwise (expert parallel above 1, where triton_kernel is refused): process_weights_after_loading upcasts the
#   experts with upcast_from_mxfp to bf16, drops the scales and the Triton MoE runs bf16 experts: 4x the MXFP4
#   bytes (`mxfp4_dequantized`).
# Hugging Face transformers (quantizers/quantizer_mxfp4.py Mxfp4HfQuantizer, integrations/mxfp4.py): with triton
# >= 3.4, the `kernels` package and a GPU of compute capability 7.5 or more (every catalog GPU) it keeps the
# checkpoint's MXFP4 tensors, swizzled for triton_kernels' matmul_ogs, unpadded (the width is kept to 64 under tensor
# parallelism, as rackfit did before: not checked against transformers' tp_plan); without them, or with
# Mxfp4Config(dequantize=True), it dequantizes the experts to bf16 at load (Mxfp4Dequantize). The quantizer is not
# trainable ("MXFP4 quantization don't support training, please consider dequantizing the model first by passing
# quantization_config=Mxfp4Config(dequantize=True)"), and that is what the fine-tuning recipes pass: OpenAI's
# cookbook "Fine-tuning with gpt-oss and Hugging Face Transformers" and Axolotl's examples/gpt-oss configs
# (`model_quantization_config_kwargs: {dequantize: true}`); FSDP and DeepSpeed load through the same quantizer, and
# Megatron-Bridge's gpt-oss bridge dequantizes the blocks at import (conversion/quantization_utils.py
# dequantize_mxfp4). So a training workload holds bf16 experts; serving under transformers is taken with its kernels
# installed (the gpt-oss model card's setup).
def mxfp4_dequantized(runtime: str | None, architecture: str | None, expert: int, training: bool) -> bool:
    """Whether `runtime` holds an MXFP4 checkpoint's routed experts dequantized to torch_dtype: any training
    workload, and SGLang off Blackwell with expert parallelism (no MXFP4 MoE runner there)."""
    if training:
        return True
    return runtime == "sglang" and architecture != "blackwell" and expert > 1


MXFP4_DEQUANTIZED_NOTE = {
    True: "MXFP4 experts dequantized to bf16 at load (training needs Mxfp4Config(dequantize=True): transformers' "
          "MXFP4 quantizer is not trainable)",
    False: "MXFP4 experts dequantized to bf16 at load (SGLang: no MXFP4 MoE runner with expert parallelism "
           "off Blackwell, upcast_from_mxfp)",
}


def mxfp4_expert_padding(arch: ModelArch | None, q: Quantization, expert_shard: int, tensor: int,
                         align: tuple[int, int] = (MXFP4_WIDTH_ALIGN, 1)) -> float:
    """Stored over logical bytes of an MXFP4 checkpoint's routed experts on one rank (1.0 for anything else)."""
    if arch is None or not arch.is_moe or q.method != "mxfp4":
        return 1.0
    exact, width = _expert_width(arch, expert_shard, tensor)
    h = arch.hidden_size
    return (-(-width // align[0]) * align[0] / exact) * (-(-h // align[1]) * align[1] / h)


def _expert_width(arch: ModelArch, expert_shard: int, tensor: int) -> tuple[float, int]:
    """A routed expert's width on one rank: (the exact share, the rows a rank allocates before any alignment). Under
    tensor parallel (no expert parallel) each rank takes ceil(width / tensor) of every expert; under expert
    parallel whole experts."""
    if expert_shard == tensor:
        return arch.moe_intermediate_size / tensor, -(-arch.moe_intermediate_size // tensor)
    return arch.moe_intermediate_size, arch.moe_intermediate_size


# vLLM's RotaryEmbedding (model_executor/layers/rotary_embedding/base.py, RotaryEmbedding.__init__ ->
# _compute_cos_sin_cache over torch.arange(max_position_embeddings), `cache.to(dtype)`, register_buffer) precomputes
# cos and sin of every position the config allows, rotary_dim values a position, in the model's 16-bit dtype, on every
# rank (float32 under --dtype float32: `dtype` is model_config.dtype); get_rope (rotary_embedding/__init__.py,
# _ROPE_DICT) hands one instance to all the layers. It is loaded with
# the model, so vLLM's "Model loading took" counts it. For most models it is 8-40 MiB (Llama 3.1: 131,072 x 128 x 2 B
# = 32 MiB, the 0.03 GiB the 0.19.0 rows' weights were short by); Llama 4 declares 10,485,760 positions (Scout;
# config.json max_position_embeddings, used as is by llama4.py Llama4Attention's get_rope): 2.5 GiB a rank. Read in
# 0.19.0; the class is the same from V0 on. SGLang's copy keeps the cache in fp32 on CUDA and later grows it on
# demand; it is not modelled.
ROPE_CACHE_BYTES = 2


def rope_cache_bytes(arch: ModelArch | None, runtime: str | None, dtype_bytes: float = ROPE_CACHE_BYTES) -> int:
    """The cos/sin cache vLLM's rotary embedding holds on each rank (0 for other runtimes, or an unknown length), in
    the model's dtype (`dtype_bytes`: 4 for an fp32 model)."""
    if arch is None or runtime != "vllm":
        return 0
    rotary = arch.qk_rope_head_dim if arch.is_mla else arch.head_dim
    # Gemma 3's two caches, its global layers' linear-scaled (models/hf_config.py, rope_cache_positions_from_hf_config)
    return int((arch.rope_cache_positions or arch.max_position_embeddings) * rotary * dtype_bytes)


# SGLang's Grok (models/grok.py Grok1Attention, read in 0.5.2rc2) gives every layer its own ScalingRotaryEmbedding when
# config.json sets rope_type (Grok 2), built at model construction on the GPU, so inside "Load weight end ... mem
# usage": get_rope_scaling passes dtype torch.float and _compute_cos_sin_cache spans original_max_position_embeddings
# x scaling_factor positions of rotary_dim values (Grok 2: 8,192 x 16 x 128 x 4 B = 64 MiB a layer, 4 GiB on every
# rank at 64 layers). The one get_rope builds first and shares (fp32 on CUDA too) is the unmodelled cache above.
LAYER_ROPE_CACHE_BYTES = 4


def layer_rope_cache_bytes(arch: ModelArch | None, runtime: str | None, layers: int) -> int:
    """The per-layer cos/sin caches SGLang's Grok holds on a rank with `layers` layers (0 for anything else)."""
    if arch is None or runtime != "sglang" or not arch.layer_rope_cache_positions:
        return 0
    return layers * arch.layer_rope_cache_positions * arch.head_dim * LAYER_ROPE_CACHE_BYTES


# vLLM's MLA attention (model_executor/layers/attention/mla_attention.py, MLAAttention.process_weights_after_loading;
# v1/attention/backends/mla/common.py before) keeps W_UK_T and W_UV, the split of kv_b_proj's weight, for its decode
# bmm's: "we currently do not have quantized bmm's ... we just store fp16/bf16 copies". For an unquantized kv_b_proj
# they are views of its weight (get_and_maybe_dequant_weights returns `weight.to(out_dtype)`), for a quantized one
# (DeepSeek-V3/R1's block fp8) a dequantized 16-bit copy held beside the fp8 weight the prefill still uses:
# kv_lora_rank x heads per rank x (qk_nope_head_dim + v_head_dim) x 2 B a layer (0.24 GiB a rank for DeepSeek-V3 at
# tensor 8). Read in 0.8.0, 0.8.5, 0.10.1 and 0.19.0; 0.7.1-0.7.3 keep the same split of kv_b_proj's (dequantized)
# weight as self.W_UK / self.W_UV, so this counts for every vLLM release, and add the absorbed matrices below.
MLA_COPY_BYTES = 2
# vLLM 0.7.1-0.7.3's V0 MLA backend (vllm/attention/backends/mla/utils.py MLACommonImpl.process_weights_after_loading,
# read in 0.7.1, 0.7.2 and 0.7.3; VLLM_MLA_PERFORM_MATRIX_ABSORPTION defaults to 1) multiplies the up-projections for
# its decode and keeps the products beside the raw q_proj / kv_b_proj / o_proj the prefill still runs:
# W_Q_UK = einsum(W_Q, W_UK), (q_lora_rank, or hidden without one) x heads per rank x kv_lora_rank, and
# W_UV_O = einsum(W_UV, W_O), heads per rank x kv_lora_rank x hidden, requantized to fp8 with the weights' own group
# shapes (scaled_quantize) when the checkpoint is fp8, else cast to the activations' dtype; and W_QR, q_proj's rope
# part, (q_lora_rank or hidden) x heads per rank x qk_rope_head_dim, in the activations' dtype ("W_QR is small so for
# simplicity we dont bother requantizing it"). DeepSeek-V3/R1 in block fp8 at tensor 8: 74 MB a layer. 0.7.0 has no
# MLA backend (deepseek_v2.py pads the heads, v0_reserved.MLA_PADDED_HEAD); 0.8.0 replaced the products by W_UK_T.
MLA_ABSORBED = ((0, 7, 1), (0, 8))


def mla_absorbed_bytes(arch: ModelArch | None, layout: Layout, attention_bytes: float, dtype_bytes: float,
                       runtime: str | None, inference: Inference | None) -> float:
    """One layer's absorbed MLA matrices on a rank under vLLM 0.7.1-0.7.3 (MLA_ABSORBED)."""
    first, until = MLA_ABSORBED
    if (arch is None or not arch.is_mla or runtime != "vllm" or inference is None or inference.vllm_before(first)
            or not inference.vllm_before(until)):
        return 0.0
    heads = arch.num_attention_heads / layout.tensor
    rows = arch.q_lora_rank or arch.hidden_size
    fp8 = 1.0 <= attention_bytes < 1.5  # requantized as the weights are (value and group scales per element)
    stored = attention_bytes if fp8 else dtype_bytes
    products = (rows * heads * arch.kv_lora_rank + heads * arch.kv_lora_rank * arch.hidden_size) * stored
    return products + rows * heads * arch.qk_rope_head_dim * dtype_bytes


def mla_dequant_copy_bytes(arch: ModelArch | None, layout: Layout, attention_bytes: float, dtype_bytes: float,
                           runtime: str | None) -> float:
    """One layer's 16-bit W_UK_T/W_UV copies on a rank under vLLM when the checkpoint quantizes its attention."""
    if arch is None or not arch.is_mla or runtime != "vllm" or attention_bytes >= dtype_bytes:
        return 0.0
    heads = arch.num_attention_heads / layout.tensor
    return arch.kv_lora_rank * heads * (arch.qk_nope_head_dim + arch.v_head_dim) * MLA_COPY_BYTES


# MLA's down-projections are not split over tensor parallel: vLLM's DeepseekV2MLAAttention (models/deepseek_v2.py)
# builds q_a_proj and kv_a_proj_with_mqa as ReplicatedLinear (read in 0.8.5) or fuses them into
# DeepSeekV2FusedQkvAProjLinear, a MergedColumnParallelLinear with disable_tp=True (0.19.0); SGLang's
# DeepseekV2AttentionMLA keeps them ReplicatedLinear too. Every rank holds hidden x (q_lora_rank + kv_lora_rank +
# qk_rope_head_dim) a layer: for DeepSeek-V3 at tensor 8, 15.1M parameters a layer, 0.75 GiB of fp8 a rank more than
# an even split. DeepSeek-V3.2's lightning indexer is whole on every rank too: SGLang's Indexer (layers/attention/nsa/
# nsa_indexer.py, read in 0.5.3) builds wq_b, wk and weights_proj as ReplicatedLinear, as vLLM's deepseek_v2.py
# Indexer does ("no tensor parallel, just replicated"); 14M parameters a layer for V3.2 (params.indexer_params), priced
# at the attention's bytes (weights_proj, 0.5M of them, is left unquantized there).
REPLICATED_MLA_RUNTIMES = ("vllm", "sglang")


def mla_replicated_params(arch: ModelArch | None, runtime: str | None) -> int:
    """One layer's attention parameters every tensor rank holds whole (MLA's q_a and kv_a projections, and the
    lightning indexer's projections where the model has one)."""
    if arch is None or not arch.is_mla or runtime not in REPLICATED_MLA_RUNTIMES:
        return 0
    return arch.hidden_size * (arch.q_lora_rank + arch.kv_lora_rank + arch.qk_rope_head_dim) + indexer_params(arch)


def mxfp4_triton(runtime: str | None, architecture: str | None, inference: Inference | None) -> bool:
    """vLLM's MXFP4 MoE on this GPU takes the Triton backend (Hopper, from MXFP4_TRITON_FROM)."""
    return (runtime == "vllm" and architecture == "hopper" and inference is not None
            and not inference.vllm_before(MXFP4_TRITON_FROM))


# vLLM's Mxfp4MoEMethod.create_weights also allocates the experts' biases, w13_bias (E, 2 x padded width) and w2_bias
# (E, padded hidden), bf16 (every release from 0.10.1; from 0.19.0, whose fused_moe oracle picks the backend, when the
# model has them: `moe.has_bias`, gpt-oss does). process_weights_after_loading keeps them bf16 for Marlin
# (marlin_utils_fp4.py prepare_moe_fp4_layer_for_marlin: `.to(param_dtype)`) and casts them to fp32 for Triton
# (`w13_bias.to(torch.float32)`) and FlashInfer (`w13_bias.data.to(torch.float32)`, shuffled into new tensors): read
# in 0.11.0 and 0.19.0 (fused_moe/oracle/mxfp4.py convert_to_mxfp4_moe_kernel_format). gpt-oss-120b: 36 x 128 x
# 8,640 values, 0.15 GiB in fp32 at tensor 1, the most of what S13's 64.38 GiB was short by.
MXFP4_BIAS_BYTES = {"marlin": 2, "triton": 4, "flashinfer": 4}
# Triton on Hopper: _swizzle_mxfp4 (quantization/utils/mxfp4_utils.py) hands the packed values, transposed to (E, K / 2
# bytes, N), to triton_kernels' HopperMXValueLayout.swizzle_data, which pads them to its mma tiles: N to 16 and the
# packed K to 32 bytes (k_tile x warp_tile x threads x scott_trick: MXFP4_TRITON_VALUE_TILE). The copy vLLM vendors
# (vllm/third_party/triton_kernels/tensor_details/layout_details/hopper_value.py) in 0.17.0-0.21.x first pre-pads
# "both matrix dims to multiples of 64" (SWIZZLE_ALIGN_M = SWIZZLE_ALIGN_K = 64, on (K / 2, N)): gpt-oss's packed
# hidden size (w13) and width (w2), 1,440 bytes, become 1,472, +2.2% of the values (read in the 0.16.0, 0.17.0,
# 0.21.0 and 0.22.0 wheels: absent before 0.17.0 and from 0.22.0). gpt-oss-20b on 0.19.0 (S37-S39): +0.20 GiB.
MXFP4_TRITON_VALUE_TILE = (16, 32)            # (N, packed K) bytes
MXFP4_TRITON_VALUE_PREPAD = ((0, 17), (0, 22))
MXFP4_TRITON_VALUE_PREPAD_BYTES = 64


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _padded_layout(mult: int, w: int, hp: int) -> tuple[int, int]:
    """(values, scales) bytes of MXFP4 experts stored at padded width `w` and hidden size `hp`, one scale a block:
    Marlin's and FlashInfer's layouts (w13 is `mult` x w by hp, w2 hp by w)."""
    return (mult + 1) * w * hp // 2, (mult + 1) * w * hp // MXFP4_BLOCK


def _triton_hopper_layout(mult: int, w: int, h: int, value_tile: tuple[int, int]) -> tuple[int, int]:
    """(values, scales) bytes of MXFP4 experts in triton_kernels' Hopper layout: the packed values padded to the mma
    tile `value_tile` (MXFP4_TRITON_VALUE_TILE, or vLLM's pre-pad), the scales kept as loaded beside their swizzled
    copy, its rows padded to MXFP4_TRITON_SCALE_ROWS (vLLM's and SGLang's triton_kernel paths alike)."""
    n_al, k_al = value_tile
    values = _round_up(mult * w, n_al) * _round_up(h // 2, k_al) + _round_up(h, n_al) * _round_up(w // 2, k_al)
    rows = MXFP4_TRITON_SCALE_ROWS
    scales = ((mult * w * h + h * w) // MXFP4_BLOCK                           # w13/w2_weight_scale, kept
              + _round_up(mult * w, rows) * _round_up(h // MXFP4_BLOCK, 2)     # the swizzled copy
              + _round_up(h, rows) * _round_up(w // MXFP4_BLOCK, 2))
    return values, scales


def _logical_bytes(mult: int, exact: float, h: int) -> float:
    """The checkpoint's MXFP4 values and scales of a rank's exact share of the routed experts."""
    return (mult + 1) * exact * h * (PRECISION_FORMATS["mxfp4"].value_bytes + MXFP4_SCALE_BYTES_PER_VALUE)


def mxfp4_vllm_expert_factor(arch: ModelArch, expert_shard: int, tensor: int, backend: str,
                             inference: Inference | None = None, biases: bool = True) -> float:
    """Stored over logical bytes of MXFP4 routed experts on one rank under vLLM's `backend` (`mxfp4_vllm_backend`):
    create_weights' padded width and hidden size, the backend's layout of values and scales, and the experts'
    biases (MXFP4_BIAS_BYTES). The logical bytes are the checkpoint's values and scales of the rank's exact share."""
    exact, width = _expert_width(arch, expert_shard, tensor)
    h, mult = arch.hidden_size, (2 if arch.gated_mlp else 1)
    if backend == "triton":
        w, hp = _round_up(width, MXFP4_WIDTH_ALIGN), h
        tile = MXFP4_TRITON_VALUE_TILE
        if inference is not None and not inference.vllm_before(MXFP4_TRITON_VALUE_PREPAD[0]) \
                and inference.vllm_before(MXFP4_TRITON_VALUE_PREPAD[1]):
            tile = (MXFP4_TRITON_VALUE_PREPAD_BYTES, MXFP4_TRITON_VALUE_PREPAD_BYTES)
        values, scales = _triton_hopper_layout(mult, w, h, tile)
    else:
        wa, ha = MXFP4_FLASHINFER_ALIGN if backend == "flashinfer" else MXFP4_MARLIN_ALIGN
        w, hp = _round_up(width, wa), _round_up(h, ha)
        values, scales = _padded_layout(mult, w, hp)
    bias = (mult * w + hp) * MXFP4_BIAS_BYTES[backend] if biases else 0
    return (values + scales + bias) / _logical_bytes(mult, exact, h)


# SGLang's MXFP4 experts by release and GPU (read in the sglang wheels 0.5.3, 0.5.4, 0.5.9, 0.5.10, 0.5.16, 0.5.17 and
# 0.5.23: python/sglang/srt/layers/quantization/mxfp4.py Mxfp4MoEMethod.create_weights and
# process_weights_after_loading; layers/moe/fused_moe_triton/layer.py FusedMoE.__init__; the GPT-OSS runner choice in
# server_args.py, in 0.5.23 arg_groups/model_overrides/gpt_oss.py). With --moe-runner-backend auto:
# - SM100 (Blackwell): flashinfer_mxfp4 (trtllm-gen). FusedMoE.__init__ rounds the hidden size to 256 for it and
#   create_weights the width per rank to 256, to 128 from SGLANG_MXFP4_FLASHINFER_128 (PR comment: "Using 128
#   alignment (not 256) since 256 was overly conservative"). process_weights_after_loading shuffles values, scales
#   and biases into new tensors (shuffle_matrix_a / shuffle_matrix_sf_a, stacked) that replace the parameters: one
#   copy of each stays, the same size. The freed originals are not given back there (it returns before
#   torch.cuda.empty_cache), but ModelRunner.load_model's "mem usage" is a free-memory difference taken with
#   get_available_gpu_memory(..., empty_cache=True), which empties PyTorch's cache first: no transient counts.
# - elsewhere with expert parallel 1: triton_kernel. create_weights rounds the width to the MX block (32) before
#   SGLANG_MXFP4_TRITON_64, to triton_kernels_padding_alignment = 64 from it; _swizzle_mxfp4 hands values and scales
#   to triton_kernels' default layouts and deletes w13_weight/w2_weight but not w13_weight_scale/w2_weight_scale. On
#   Hopper those layouts are HopperMXValueLayout / HopperMXScaleLayout (num_warps 8), new padded tensors, as under
#   vLLM's Triton backend: values tiled (MXFP4_TRITON_VALUE_TILE), scales kept twice, the copy's rows padded to
#   MXFP4_TRITON_SCALE_ROWS. On Ampere and Ada triton_kernels keeps a strided layout (views of the parameters):
#   values and scales once.
# - both paths cast the experts' biases (w13_weight_bias (E, 2 x width), w2_weight_bias (E, hidden), created bf16
#   at the padded sizes) to fp32 and keep only that: SGLANG_MXFP4_BIAS_BYTES.
# Expert parallel above 1 off Blackwell: bf16 experts (`mxfp4_dequantized`), not this.
SGLANG_MXFP4_TRITON_64 = (0, 5, 10)
SGLANG_MXFP4_FLASHINFER_128 = (0, 5, 17)
SGLANG_MXFP4_FLASHINFER_WIDTH = {True: 256, False: 128}    # before SGLANG_MXFP4_FLASHINFER_128 or not
SGLANG_MXFP4_FLASHINFER_HIDDEN = 256
SGLANG_MXFP4_BIAS_BYTES = 4


def mxfp4_sglang_backend(architecture: str | None) -> str:
    """SGLang's MoE runner for an MXFP4 gpt-oss checkpoint with expert parallel 1: "flashinfer" on Blackwell,
    "triton_hopper" on Hopper (and a GPU not known, the larger of the two Triton cases), "triton" on Ampere/Ada."""
    if architecture == "blackwell":
        return "flashinfer"
    return "triton" if architecture in ("ampere", "ada") else "triton_hopper"


def mxfp4_sglang_expert_factor(arch: ModelArch, expert_shard: int, tensor: int, architecture: str | None,
                               inference: Inference | None = None) -> float:
    """Stored over logical bytes of MXFP4 routed experts on one rank under SGLang's MoE runner for the GPU and
    release (`mxfp4_sglang_backend`): padded width and hidden size, the scales' second copy on Hopper's
    triton_kernel path, and fp32 biases. The logical bytes are the checkpoint's values and scales of the rank's
    exact share, as in `mxfp4_vllm_expert_factor`."""
    exact, width = _expert_width(arch, expert_shard, tensor)
    h, mult = arch.hidden_size, (2 if arch.gated_mlp else 1)
    # a spec without engineVersion is a current SGLang, as everywhere else in rackfit's SGLang model (sglang.py)
    def old(release: tuple[int, ...]) -> bool:
        return inference is not None and inference.sglang_before(release)
    backend = mxfp4_sglang_backend(architecture)
    if backend == "flashinfer":
        w = _round_up(width, SGLANG_MXFP4_FLASHINFER_WIDTH[old(SGLANG_MXFP4_FLASHINFER_128)])
        hp = _round_up(h, SGLANG_MXFP4_FLASHINFER_HIDDEN)
        values, scales = _padded_layout(mult, w, hp)
    else:
        hp = h
        w = _round_up(width, MXFP4_BLOCK if old(SGLANG_MXFP4_TRITON_64) else MXFP4_WIDTH_ALIGN)
        values, scales = (_triton_hopper_layout(mult, w, h, MXFP4_TRITON_VALUE_TILE) if backend == "triton_hopper"
                          else _padded_layout(mult, w, h))
    bias = (mult * w + hp) * SGLANG_MXFP4_BIAS_BYTES
    return (values + scales + bias) / _logical_bytes(mult, exact, h)


def mxfp4_dequantize_note(runtime: str | None, architecture: str | None, layout: Layout, training: bool
                          ) -> str | None:
    """The note of `mxfp4_dequantized` for `layout`, None where MXFP4 experts stay MXFP4."""
    return MXFP4_DEQUANTIZED_NOTE[training] if mxfp4_dequantized(runtime, architecture, layout.expert, training) \
        else None


def stage_share(num_layers: int, pipeline: int) -> float:
    """Share of the layers on the heaviest pipeline stage: ceil(L / p) of L."""
    return heaviest_stage_layers(num_layers, pipeline) / num_layers


_uniform = lru_cache(maxsize=64)(uniform)


# vLLM's bitsandbytes loader dequantizes a double-quantized checkpoint's nested absmax to fp32 at load from 0.10.0
# (model_loader/bitsandbytes_loader.py `_dequantize_dq`, called from `_bind_quant_states_to_params` and
# `_fuse_moe_quant_states`); 0.5.x-0.9.2 (model_loader/loader.py, then bitsandbytes_loader.py) keep the QuantState as
# the checkpoint stores it (`QuantState.from_dict`: uint8 absmax, fp32 `state2.absmax` per 256 blocks) and
# bitsandbytes' `dequantize_4bit` undoes the nesting per call, a transient. Read in the wheels of 0.9.2 and 0.10.0.
BNB_DEQUANTIZED_ABSMAX_FROM = (0, 10)


def quantization_of(arch: ModelArch | None, precision: str, num_layers: int, runtime: str | None = None,
                    dequantize: str | None = None, inference: Inference | None = None) -> Quantization:
    """What the weights store: the checkpoint's quantization_config wins over the spec's precision; `runtime` vllm
    takes what vLLM's loader holds where it differs (a double-quantized bitsandbytes checkpoint's absmax in fp32,
    from BNB_DEQUANTIZED_ABSMAX_FROM: `inference` names the release). `dequantize` (a note, from
    `mxfp4_dequantized`): MXFP4 experts held in torch_dtype instead."""
    held = runtime == "vllm" and (inference is None or not inference.vllm_before(BNB_DEQUANTIZED_ABSMAX_FROM))
    if arch is not None and arch.quantization is not None:
        q = arch.quantization
        q = q.vllm if held and q.vllm is not None else q
    else:  # `precision: nf4` on a 16-bit checkpoint: vLLM's in-flight bitsandbytes, absmax fp32 from 0.10.0
        q = _uniform(precision, num_layers, NF4_FP32_ABSMAX if held and precision == "nf4" else None)
    return _dequantized(q, dequantize) if dequantize and q.method == "mxfp4" else q


_dequantized = lru_cache(maxsize=16)(dequantized_experts)


def _layer_params(p: ParamCounts, num_layers: int, arch: ModelArch | None) -> list[tuple[int, tuple[float, ...]]]:
    """(count, (attention, dense MLP, routed experts, shared experts, router) parameters of one layer)
    runs of decoder layers: the dense layers first, then the MoE ones. Without the architecture every
    layer gets an equal share and routers stay inside `shared`."""
    L = num_layers
    if arch is None or not arch.is_moe:
        return [(L, (p.attention / L, p.dense_mlp / L, p.experts / L, p.shared / L, 0.0))]
    moe = arch.moe_layers
    dense = L - moe
    per_expert = (3 if arch.gated_mlp else 2) * arch.moe_intermediate_size
    router = p.shared * arch.num_experts / (arch.num_experts + arch.num_shared_experts * per_expert)
    runs = [(dense, (p.attention / L, p.dense_mlp / dense, 0.0, 0.0, 0.0))] if dense else []
    return [*runs, (moe, (p.attention / L, 0.0, p.experts / moe, (p.shared - router) / moe, router / moe))]


def weight_bytes(p: ParamCounts, precision: str, layout: Layout, num_layers: int,
                 arch: ModelArch | None = None, runtime: str | None = None, architecture: str | None = None,
                 inference: Inference | None = None, training: bool = False) -> int:
    """Per-GPU weight bytes under tensor, pipeline and expert sharding (the most loaded stage).

    `arch` brings a checkpoint's per-module quantization and which layers are dense or MoE; without it,
    every layer is alike and stored in `precision`. `runtime` (the serving engine or training framework) and the
    GPU's `architecture` decide how a runtime pads what it stores (MXFP4 experts: `mxfp4_align`), and a serving
    spec's `inference` (its vLLM release) which MXFP4 backend vLLM takes on Hopper (`mxfp4_triton`), and,
    with `training`, whether it dequantizes MXFP4 experts (`mxfp4_dequantized`)."""
    q = quantization_of(arch, precision, num_layers, runtime, mxfp4_dequantize_note(runtime, architecture, layout,
                                                                                   training), inference)
    tensor = layout.tensor
    expert_shard = layout.expert if layout.expert > 1 else tensor
    pad = mxfp4_expert_padding(arch, q, expert_shard, tensor, mxfp4_align(runtime, architecture, inference))
    if runtime == "vllm" and arch is not None and arch.is_moe and q.method == "mxfp4" and not training:
        # what vLLM's backend for the GPU and release stores, biases included (mxfp4_vllm_expert_factor)
        pad = mxfp4_vllm_expert_factor(arch, expert_shard, tensor, mxfp4_vllm_backend(architecture, inference),
                                       inference)
    if (runtime == "sglang" and arch is not None and arch.is_moe and q.method == "mxfp4" and not training
            and not mxfp4_dequantized(runtime, architecture, layout.expert, training)):
        # what SGLang's MoE runner for the GPU and release stores, biases included (mxfp4_sglang_expert_factor)
        pad = mxfp4_sglang_expert_factor(arch, expert_shard, tensor, architecture, inference)
    # SGLang's DP attention splits attention over tensor / dp GPUs only (sglang.attention_tensor)
    attn_shard = attention_tensor(inference, tensor) if runtime == "sglang" else tensor
    per_layer: list[float] = []
    # walk the runs of alike layers of both (few: dense/MoE, and a checkpoint's exceptions)
    params, quant = _layer_params(p, num_layers, arch), list(q.runs)
    while params:
        (n_p, (attn, mlp, experts, shared, router)), (n_q, b) = params[0], quant[0]
        n = min(n_p, n_q)
        whole = min(attn, mla_replicated_params(arch, runtime)) if attn else 0
        split = ((attn - whole) * b.attention + mlp * b.mlp + shared * b.shared) / tensor if attn_shard == tensor \
            else (attn - whole) * b.attention / attn_shard + (mlp * b.mlp + shared * b.shared) / tensor
        one = (split + whole * b.attention
               + experts * b.experts * pad / expert_shard + router * b.router
               + mla_dequant_copy_bytes(arch, layout, b.attention, q.dtype_bytes, runtime)
               + mla_absorbed_bytes(arch, layout, b.attention, q.dtype_bytes, runtime, inference))
        per_layer.extend([one] * n)
        params[0], quant[0] = (n_p - n, params[0][1]), (n_q - n, b)
        params, quant = [r for r in params if r[0]], [r for r in quant if r[0]]
    # pipeline stages hold ceil(L / p) consecutive layers; the heaviest stage counts
    per_stage_layers = heaviest_stage_layers(num_layers, layout.pipeline)
    stages = [sum(per_layer[s:s + per_stage_layers]) for s in range(0, num_layers, per_stage_layers)]
    # a vision tower stays in the checkpoint's 16-bit dtype (quantization configs skip it), split over tensor
    # parallel as vLLM's encoders build their layers, on the first stage with the embedding
    stages[0] += p.vision * q.dtype_bytes / layout.tensor
    heaviest = max(stages)
    per_stage = heaviest + p.norms * q.dtype_bytes * stage_share(num_layers, layout.pipeline)
    # vocab-parallel embedding/lm_head; with pipelining the first stage holds the embedding, the last the
    # lm_head: the heaviest stage holds the larger one (both when there is one stage).
    # Under SGLang's DP attention each is whole or split by release (sglang.vocab_shards); a tied lm_head is the
    # embedding's own tensor.
    emb_shards, head_shards = vocab_shards(inference, tensor) if runtime == "sglang" and dp_attention(inference) > 1 \
        else (tensor, tensor)
    emb = p.embedding * q.embedding / emb_shards
    head = (p.lm_head or p.embedding) * q.lm_head / (head_shards if p.lm_head else emb_shards)
    vocab = emb + (head if p.lm_head else 0) if layout.pipeline == 1 else max(emb, head)
    return int(per_stage + vocab) + rope_cache_bytes(arch, runtime, q.dtype_bytes) \
        + layer_rope_cache_bytes(arch, runtime, per_stage_layers)
