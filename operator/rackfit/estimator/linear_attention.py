"""Hybrid models whose layers mix full attention with linear attention or state-space layers (Qwen3-Next and Qwen3.5's
Gated DeltaNet, Mamba hybrids: Granite 4.0-H, Bamba, Jamba) as vLLM V1 caches them: KV pages for the full-attention
layers, one fixed-size state per request for each linear layer, both paged out of one pool.

Read in vLLM 0.22.0 (the same in 0.10.2-0.29 where noted):
- model_executor/layers/mamba/mamba_utils.py MambaStateShapeCalculator: gated_delta_net_state_shape keeps a conv
  state of (kernel - 1) x (2 x key_heads x key_dim + value_heads x value_dim) / tp and a temporal state of
  value_heads / tp x value_dim x key_dim; mamba2_state_shape the same with n_groups for the key heads (replicated up to
  tp when fewer, extra_groups_for_head_shards), d_state for the key width, heads x head_dim for the values; Mamba-1
  (mamba1_state_shape) is inner x (kernel - 1) and inner x d_state. MambaStateDtypeCalculator: both states in the
  model's dtype unless mamba_ssm_cache_dtype (Qwen3.5's config mamba_ssm_dtype, NemotronH's float32 default) says
  otherwise for the temporal one.
- v1/kv_cache_interface.py MambaSpec.page_size_bytes: the states' bytes (page_size_padded when set);
  max_memory_usage_bytes: one page a request (mamba_cache_mode 'none'), 2 ('align'), cdiv(max_model_len, block) ('all').
- platforms/interface.py _align_hybrid_block_size (HybridAttentionMambaModelConfig.verify_and_update_config in
  0.10.2-0.19, model_executor/models/config.py): the attention block size is raised to the smallest multiple of the
  kernel's alignment (16) whose page holds one state, attn_block = 16 x cdiv(state, 16 x attention bytes a token), and
  the state padded to that page (mamba_page_size_padded).
- v1/core/kv_cache_utils.py: the linear layers form groups like the sliding-window ones (kvcache.vllm_kv_groups), all
  groups paging one pool of num_blocks = pool // page // group_size; "GPU KV cache size" is num_blocks // len(groups) x
  block_size up to 0.20.0, and from 0.21.0 max_concurrency x max_model_len (_report_kv_cache_config), the
  concurrency being num_blocks / (group_size x the blocks of one request over all groups)
  (get_max_concurrency_for_kv_cache_config).
"""

from __future__ import annotations

from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Inference
from rackfit.units import GiB

# FlashAttention's MultipleOf(16) and CacheConfig.block_size 16 (get_supported_kernel_block_sizes)
KERNEL_BLOCK_ALIGNMENT = 16
# _report_kv_cache_config: GPU KV cache size = max_concurrency x max_model_len from 0.21.0 (num_blocks // groups x block
# before)
TOKENS_FROM_CONCURRENCY = (0, 21)
# MambaModelConfig.verify_and_update_config from 0.15.0: prefix caching (off by default for hybrid models,
# is_prefix_caching_supported) sets mamba_cache_mode 'align' (2 pages a linear layer, MambaSpec.max_memory_usage_bytes)
# for models without SupportsMambaPrefixCaching (Qwen3-Next, Qwen3.5); 'all' for those with it (Mamba hybrids: one
# page per block of context, the block aligned to the mamba chunk size), not modelled
MAMBA_ALIGN_MODE = (0, 15)
# engine/arg_utils.py EngineArgs (_set_default_chunked_prefill_and_prefix_caching_args): from 0.28.0 an unset
# --enable-prefix-caching is model_config.is_prefix_caching_supported, True for a generative hybrid model
# (config/model.py: attn_type 'hybrid'), so the mode above is 'align' by default (0.29.0's log: "Mamba cache mode is set
# to 'align' ... by default when prefix caching is enabled", and a request at max_model_len draws 2 blocks from each
# linear group, MambaSpec.max_memory_usage_bytes, get_max_concurrency_for_kv_cache_config); through 0.27.1 the default
# left hybrids out ("Hybrid models support prefix caching but keep it opt-in for now": ... and not
# model_config.is_hybrid). Read in the 0.27.1, 0.28.0, 0.29.0 and 0.34.0 wheels.
HYBRID_PREFIX_CACHING_DEFAULT = (0, 28)
# config/compilation.py CompilationConfig.resolve_cudagraph_mode_and_sizes from 0.20.0 (read in 0.20.0 and 0.24.0; not
# in 0.19.1): with full decode CUDA graphs (V1's default cudagraph_mode FULL_AND_PIECEWISE; none under --enforce-eager)
# a model with Mamba / linear-attention layers needs one cache block a decode sequence, and once the cache is sized
# the engine refuses when max_num_seqs > kv_cache_config.num_blocks ("max_num_seqs (256) exceeds available Mamba cache
# blocks (134) ... CUDA graph capture cannot proceed"), num_blocks = pool // page // group_size
# (v1/core/kv_cache_utils.py get_num_blocks).
MAMBA_BLOCKS_CHECK = (0, 20)


def prefix_caching(inf: Inference) -> bool:
    """--enable-prefix-caching as vLLM resolves it for a hybrid model: the spec's prefixCaching, unset on from 0.28.0
    (a spec without engineVersion is a current release) and off before (HYBRID_PREFIX_CACHING_DEFAULT)."""
    if inf.prefix_caching is not None:
        return inf.prefix_caching
    return not inf.vllm_before(HYBRID_PREFIX_CACHING_DEFAULT)


def is_hybrid_linear(a: ModelArch) -> bool:
    return a.linear_attention_layers > 0


def linear_layer_params(a: ModelArch) -> int:
    """One linear layer's weights (vLLM qwen3_next.py Qwen3NextGatedDeltaNet, transformers' modeling_qwen3_next.py):
    in_proj_qkvz (hidden x (2 key heads x key dim + 2 value heads x value dim)), in_proj_ba (hidden x 2 value heads),
    the depthwise conv1d (conv_dim x kernel), dt_bias and A_log (a value head each), the gated RMSNorm (value dim) and
    out_proj (value heads x value dim x hidden). A Mamba-2 layer (mamba_mixer2.py: in_proj of 2 x inner + 2 x groups x
    d_state + heads, the conv with its bias, dt_bias, A, D, the norm over inner, out_proj) differs by a few heads'
    and conv_dim's worth."""
    h = a.hidden_size
    keys = a.linear_num_key_heads * a.linear_key_head_dim
    values = a.linear_num_value_heads * a.linear_value_head_dim
    conv_dim = 2 * keys + values
    return (h * (2 * keys + 2 * values) + h * 2 * a.linear_num_value_heads + conv_dim * a.linear_conv_kernel_dim
            + 2 * a.linear_num_value_heads + a.linear_value_head_dim + values * h)


def state_bytes(a: ModelArch, tensor: int, dtype_bytes: int = 2, float32_state: bool | None = None) -> int:
    """One linear layer's state for one request on one tensor rank (MambaSpec.page_size_bytes before padding): the conv
    state in the model's dtype, the temporal state in it or in float32 (linear_state_float32, or `float32_state` where
    the engine decides: SGLang's default)."""
    key_heads = max(1, a.linear_num_key_heads // tensor) if a.linear_num_key_heads else 0
    value_heads = max(1, a.linear_num_value_heads // tensor)
    conv = (2 * key_heads * a.linear_key_head_dim + value_heads * a.linear_value_head_dim) \
        * max(0, a.linear_conv_kernel_dim - 1)
    temporal = value_heads * a.linear_key_head_dim * a.linear_value_head_dim
    wide = a.linear_state_float32 if float32_state is None else float32_state
    return conv * dtype_bytes + temporal * (4 if wide else dtype_bytes)


def attention_block_tokens(a: ModelArch, tensor: int, attn_bytes_per_token: int, dtype_bytes: int = 2) -> int:
    """The attention block size vLLM raises to so that one page holds a linear layer's state (_align_hybrid_block_size,
    mamba_cache_mode 'none')."""
    state = state_bytes(a, tensor, dtype_bytes)
    align = KERNEL_BLOCK_ALIGNMENT
    return max(align, align * -(-state // (align * attn_bytes_per_token)))


def linear_kv_groups(a: ModelArch, pipeline: int, spread: float = 0.0) -> tuple[int, int, int]:
    """(group_size, full-attention groups, linear groups) of the heaviest stage: each type split into groups of
    group_size layers, the smaller type's count (the larger when under `spread` x the smaller), the last one padded
    (as kvcache.vllm_kv_groups groups sliding layers)."""
    stage = heaviest_stage_layers(a.num_layers, pipeline)
    full = min(stage, a.num_layers - a.linear_attention_layers)
    linear = stage - full
    if not linear or not full:
        return stage, int(full > 0), int(linear > 0)
    small, large = min(full, linear), max(full, linear)
    group = large if large < small * spread else small
    return group, -(-full // group), -(-linear // group)


def vllm_linear_kv(a: ModelArch, attn_bytes_per_token: int, tensor: int, pipeline: int, context: int,
                   spread: float, tokens_from_concurrency: bool, dtype_bytes: int = 2,
                   states: int = 1) -> tuple[int, int]:
    """(bytes a logged token costs, bytes one `context`-token request takes) of a hybrid linear model under vLLM V1.
    A request holds cdiv(context, block) pages in each full-attention layer and one page in each linear layer, paged as
    group_size x groups (padding included). The token cost is what makes the pool // cost the logged "GPU KV cache
    size": group_size x groups attention layers a token up to 0.20.0, one request's bytes / context from 0.21.0.
    `states`: pages a linear layer holds a request (2 under mamba_cache_mode 'align')."""
    block = attention_block_tokens(a, tensor, attn_bytes_per_token, dtype_bytes)
    page = block * attn_bytes_per_token
    group, full, linear = linear_kv_groups(a, pipeline, spread)
    request = group * page * (full * -(-context // block) + linear * states)
    if tokens_from_concurrency:
        return -(-request // context), request
    return attn_bytes_per_token * group * (full + linear), request


def vllm_linear_blocks(a: ModelArch, attn_bytes_per_token: int, tensor: int, pipeline: int, pool: int, spread: float,
                       dtype_bytes: int = 2) -> int:
    """The blocks a hybrid linear model's pool of `pool` bytes holds under vLLM V1 (kv_cache_config.num_blocks): every
    block is a page in each of group_size layer slots, the page the raised attention block's (vllm_linear_kv)."""
    page = attention_block_tokens(a, tensor, attn_bytes_per_token, dtype_bytes) * attn_bytes_per_token
    return max(pool, 0) // page // linear_kv_groups(a, pipeline, spread)[0]


def mamba_blocks_refusal(inf: Inference, a: ModelArch, attn_bytes_per_token: int, tensor: int, pipeline: int,
                         pool: int, spread: float, max_num_seqs: int) -> str | None:
    """vLLM from MAMBA_BLOCKS_CHECK with CUDA graphs: a hybrid linear model refuses to start when max_num_seqs exceeds
    the cache's blocks, one of which every decode sequence's state takes."""
    if (inf.engine != "vllm" or inf.vllm_before(MAMBA_BLOCKS_CHECK) or not inf.cuda_graphs
            or not is_hybrid_linear(a)):
        return None
    blocks = vllm_linear_blocks(a, attn_bytes_per_token, tensor, pipeline, pool, spread)
    if max_num_seqs <= blocks:
        return None
    return (f"{f'vllm {inf.engine_version}' if inf.engine_version else 'vllm'} would refuse to start: maxNumSeqs "
            f"{max_num_seqs} exceeds the {blocks} Mamba cache blocks its {max(pool, 0) / GiB:.2f} GiB KV cache holds "
            "(one a decode sequence, checked before CUDA graph capture); lower maxNumSeqs to at most "
            f"{blocks}, raise gpuMemoryUtilization or set cudaGraphs false")


# vLLM's profile run and a Gated DeltaNet layer (read in 0.15.0 models/qwen3_next.py Qwen3NextGatedDeltaNet, 0.24.0 and
# 0.27.1 layers/mamba/gdn/qwen_gdn_linear_attn.py QwenGatedDeltaNetAttention.forward_cuda / _forward_core): the
# profile's _dummy_run passes no attention metadata, and _forward_core returns at `attn_metadata is None` ("V1 profile
# run"; from 0.24 after _warmup_prefill_kernels, one chunk_gated_delta_rule over T = FLA_CHUNK_SIZE = 64 tokens on the
# first layer). So the causal conv1d and the FLA chunk kernels (chunk_fwd_h's per-chunk states, the w/u/A tensors of
# recompute_w_u_fwd / solve_tril) never run at max_num_batched_tokens in the profile: what the layer holds there is
# its projections. forward_cuda keeps in_proj_qkvz's output (2 x keys + 2 x values a token on this rank; split into
# q/k/v and z as views), in_proj_ba's (2 x value heads) with contiguous copies of b and a, core_attn_out =
# torch.zeros(tokens, value heads, value dim), and _output_projection's gated RMSNorm output (values) and out_proj's
# result (hidden) beside the decoder layer's self_attention_output = torch.empty_like(hidden_states)
# (Qwen3NextDecoderLayer.forward): all live when out_proj returns, as `z` still views in_proj_qkvz's output.
def gated_delta_net(a: ModelArch) -> bool:
    """A Gated DeltaNet hybrid (Qwen3-Next, Qwen3.5/3.6/3.8), told from the Mamba hybrids that share the linear fields
    by its key heads and the full-attention layers' output gate, which Qwen3NextAttention has and Mamba hybrids lack."""
    return is_hybrid_linear(a) and a.linear_num_key_heads > 0 and a.attention_output_gate


def gdn_profile_width(a: ModelArch, tensor: int) -> int:
    """Elements a token that a Gated DeltaNet layer holds at its widest in vLLM's profile forward on one tensor rank,
    beside the residual and the normed input (the comment above): in_proj_qkvz's output, in_proj_ba's and the b/a
    copies, core_attn_out, the gated norm's output, out_proj's result and the layer's output buffer."""
    key_heads = max(1, a.linear_num_key_heads // tensor)
    value_heads = max(1, a.linear_num_value_heads // tensor)
    keys = key_heads * a.linear_key_head_dim
    values = value_heads * a.linear_value_head_dim
    qkvz = 2 * keys + 2 * values
    return qkvz + 2 * 2 * value_heads + 2 * values + 2 * a.hidden_size
