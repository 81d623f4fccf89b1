"""SGLang's token pool beyond its memory fraction, by release: how many tokens the pool's bytes hold (the hybrid
sliding-window pool, the page size), the request-to-token table and max_running_requests, and the piecewise CUDA
graphs' share of the default fraction's reserve.

Read in the sglang wheels 0.3.0, 0.3.6, 0.4.0, 0.4.4, 0.4.6-0.4.10, 0.5.1-0.5.10, 0.5.13, 0.5.16, 0.5.19, 0.5.21 and
0.5.23 (python/sglang/srt/model_executor/model_runner.py and, from 0.5.7, model_runner_kv_cache_mixin.py:
profile_max_num_token, init_memory_pool, set_num_token_hybrid / set_num_tokens_hybrid_swa; server_args.py
_handle_gpu_memory_settings, model_specific_adjustments, _handle_attention_backend_compatibility; configs/
model_config.py is_hybrid_swa_model). A spec without engineVersion is the current release, as elsewhere.

Pure: no I/O.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.kvcache import KV_BYTES
from rackfit.estimator.linear_attention import gated_delta_net, state_bytes
from rackfit.models import ModelArch
from rackfit.spec import Inference

# --- The hybrid sliding-window pool -------------------------------------------------------------------------------
# With a hybrid SWA pool (set_num_tokens_hybrid_swa) the tokens profile_max_num_token computes for every layer are
# re-split: total = tokens x num_hidden_layers, full_tokens = int(total / (swa_full_tokens_ratio x swa_layers +
# full_layers)), swa_tokens = int(full_tokens x ratio), each rounded down to the page; max_total_num_tokens (what the
# scheduler logs) is then full_tokens. swa_full_tokens_ratio defaults to 0.8 (server_args.py, 0.4.10-0.5.21).
SGLANG_SWA_RATIO = 0.8
# Which models get it: gpt-oss (GptOssForCausalLM) from 0.5.8 (model_config.py is_hybrid_swa_model lists it with
# Llama 4 and MiMo-V2-Flash; through 0.5.7 model_specific_adjustments set disable_hybrid_swa_memory for gpt-oss
# unconditionally), except with the trtllm_mha attention backend, gpt-oss's default on SM100 (B200, GB200, B300), in
# 0.5.8 and 0.5.9 ("Disable hybrid SWA memory for GPT-OSS model with trtllm_mha attention backend"; gone in 0.5.10).
# Gemma 2 and 3 and OLMo 2 keep disable_hybrid_swa_memory through 0.5.23 ("not yet supported"), and dense models with
# a sliding window keep every layer of every token in one pool. rackfit has no architecture name: a mixture of experts
# with some (not all) sliding layers stands for gpt-oss (and MiMo-V2-Flash).
SGLANG_SWA_GPT_OSS = (0, 5, 8)
SGLANG_SWA_GPT_OSS_SM100 = (0, 5, 10)
# The token-to-KV pool's page (server_args.page_size, default 1; init_memory_pool rounds max_total_num_tokens down to
# it). The trtllm_mha backend forces 64 (_handle_attention_backend_compatibility: "TensorRT-LLM MHA only supports
# page_size of 16, 32 or 64, changing page_size ... to 64"); it is gpt-oss's default on SM100 from 0.5.1
# (model_specific_adjustments) and every non-MLA model's on SM100 from 0.5.7 (the auto-selected backend).
SGLANG_TRTLLM_MHA_PAGE = 64
SGLANG_TRTLLM_MHA_GPT_OSS = (0, 5, 1)
SGLANG_TRTLLM_MHA_DEFAULT = (0, 5, 7)
SM100 = ("B200", "GB200", "B300", "GB300")

# --- The request-to-token table --------------------------------------------------------------------------------------
# init_memory_pool, after the pool's tokens are known: max_num_reqs = min(max(int(max_total_num_tokens / context_len x
# 512), 2048), cap) unless --max-running-requests is given; ReqToTokenPool holds an int32 (size, max_context_len)
# tensor of size = max_num_reqs (+1 in 0.3.6-0.4.6) rows and max_context_len = context_len + 4 (+ 8 before 0.3.6).
# The cap was 5120 in 0.3.0, 4096 from 0.3.6. The table is allocated after profile_max_num_token, out of the
# (1 - mem_fraction_static) reserve, with the pool itself.
SGLANG_REQ_4096 = (0, 3, 6)
SGLANG_REQ_NO_SPARE_ROW = (0, 4, 7)
REQ_INDEX_BYTES = 4

# --- The piecewise CUDA graphs' reserve ------------------------------------------------------------------------------
# From 0.5.10 piecewise (prefill) CUDA graphs are on by default (disable_piecewise_cuda_graph False; 0.5.3-0.5.9 had
# enable_piecewise_cuda_graph False) and the default mem_fraction_static's reserve adds 8 MiB per captured token count
# up to piecewise_cuda_graph_max_tokens (the chunk; "Only non-torch memory is counted"), 1.5 GiB with an MLA backend,
# before the 10 GiB floor (_handle_gpu_memory_settings; reserve_for_graph_mb from 0.5.16, read to 0.5.21). They are
# off under pipeline parallel, for multimodal models, with speculative decoding or DP attention (_handle_piecewise_
# cuda_graph), none of which rackfit's default settings take but the first two (DP attention: dataParallelAttention).
SGLANG_PIECEWISE_RESERVE = (0, 5, 10)
PIECEWISE_MIB_PER_SIZE = 8
PIECEWISE_MLA_MIB = 1.5 * 1024

# --- Speculative decoding's reserve -------------------------------------------------------------------------------
# server_args.py: the default mem_fraction_static reserves more for EAGLE/EAGLE3/NEXTN ("eagle draft models and cuda
# graphs") and STANDALONE ("standalone draft model and cuda graphs"), none for NGRAM, added after the reserve table's
# value (0.4.8-0.5.2) or after the formula's 10 GiB floor (_handle_gpu_memory_settings, 0.5.3 on): 2 GiB and 6 GiB
# from 0.4.8 (read in the 0.4.8, 0.5.3, 0.5.5, 0.5.7, 0.5.8 and 0.5.9 wheels), 4 GiB and 6 GiB from 0.5.10 (0.5.10,
# 0.5.11, 0.5.13); gone from 0.5.14, which counts the draft instead (speculative.SGLANG_DRAFT_COUNTED). Keyed by
# inference.speculativeMethod; a method not named (none, ngram) reserves nothing.
SGLANG_SPECULATIVE_RESERVE_MIB = (((0, 5, 14), None),
                                  ((0, 5, 10), {"draft": 6 * 1024, "eagle": 4 * 1024, "eagle3": 4 * 1024,
                                                "mtp": 4 * 1024}),
                                  ((0, 4, 8), {"draft": 6 * 1024, "eagle": 2 * 1024, "eagle3": 2 * 1024,
                                               "mtp": 2 * 1024}))


def gpt_oss_shaped(a: ModelArch | None) -> bool:
    """A mixture of experts with some, not all, layers on a sliding window: SGLang's hybrid-SWA architectures."""
    return a is not None and a.is_moe and a.sliding_window > 0 and 0 < a.sliding_window_layers < a.num_layers


def _sm100(gpu: GPU | None) -> bool:
    return gpu is not None and gpu.model.upper() in SM100


def hybrid_swa(inf: Inference, a: ModelArch | None, gpu: GPU | None) -> bool:
    """Whether SGLang sizes this model's pool as a hybrid sliding-window pool (SGLANG_SWA_GPT_OSS)."""
    if not gpt_oss_shaped(a) or inf.sglang_before(SGLANG_SWA_GPT_OSS):
        return False
    return not (_sm100(gpu) and inf.sglang_before(SGLANG_SWA_GPT_OSS_SM100))


def page_size(inf: Inference, a: ModelArch | None, gpu: GPU | None) -> int:
    """The token-to-KV pool's page under the release's default attention backend (SGLANG_TRTLLM_MHA_PAGE), or
    DeepSeek-V3.2's NSA pool's (NSA_PAGE)."""
    if nsa(inf, a):
        return NSA_PAGE
    if not _sm100(gpu) or (a is not None and a.is_mla):
        return 1
    if not inf.sglang_before(SGLANG_TRTLLM_MHA_DEFAULT):
        return SGLANG_TRTLLM_MHA_PAGE
    if gpt_oss_shaped(a) and not inf.sglang_before(SGLANG_TRTLLM_MHA_GPT_OSS):
        return SGLANG_TRTLLM_MHA_PAGE
    return 1


# --- DeepSeek-V3.2's sparse attention (NSA): a model with the lightning indexer (ModelArch.has_indexer) ------------
# Read in the 0.5.3, 0.5.4, 0.5.5 and 0.5.10 wheels: server_args.py model_specific_adjustments (`is_deepseek_nsa`:
# DeepseekV3/V32ForCausalLM with index_topk), model_runner.py profile_max_num_token (0.5.3-0.5.5) and
# model_runner_kv_cache_mixin.py get_cell_size_per_token (0.5.10), mem_cache/memory_pool.py NSATokenToKVPool and
# MLATokenToKVPool's kv_cache_dim. From 0.5.3, DeepSeek-V3.2's first release, SGLang:
# - keeps an NSATokenToKVPool: a token and layer hold the MLA record and the indexer's keys, index_head_dim fp8 bytes
#   and a float32 scale a 128 (index_k_with_scale_buffer, uint8): 132 B for V3.2 (nsa_index_bytes);
# - stores an fp8 record as kv_lora_rank fp8 values, a float32 scale a 128 of them and the rope part in 16 bits (the
#   kv_cache_dim 656 MLATokenToKVPool hard-codes in 0.5.3 and 0.5.4, calculate_mla_kv_cache_dim's override after), any
#   other dtype as (kv_lora_rank + qk_rope_head_dim) x its bytes;
# - caches in fp8 on Blackwell (compute capability 10 and up, "for Blackwell, we support fp8 only currently"): over
#   whatever was asked in 0.5.3 and 0.5.4, for kv_cache_dtype auto only from 0.5.5 (nsa_kv_precision);
# - sizes the pool with a cell of (kv_lora_rank + qk_rope_head_dim) x the dtype's bytes a layer, without the fp8
#   record's scales and 16-bit rope, and without the indexer's keys before 0.5.4 (PR 11309, "Include indexer kv cache
#   when estimating kv cache size", from 0.5.4): the pool then allocates more than rest_memory, and the difference
#   comes out of the (1 - mem_fraction_static) reserve (S1233: "avail mem=15.38 GB" after a 65.49 GiB pool);
# - pages by 64 (page_size = 64, NSA_PAGE);
# - sets mem_fraction_static to 0.8 over any other in 0.5.3 ("Setting mem fraction static to 0.8 for DeepSeek NSA";
#   gone in 0.5.4: nsa_fraction);
# - turns DP attention on at dp = tp, which rackfit does not infer: inference.dataParallelAttention states it.
# Later releases (0.5.10's trtllm/tilelang backends keep the unscaled record) are taken as 0.5.5's.
SGLANG_NSA = (0, 5, 3)
SGLANG_NSA_INDEXER_CELL = (0, 5, 4)
SGLANG_NSA_FP8_ONLY_AUTO = (0, 5, 5)
SGLANG_NSA_FRACTION_UNTIL = (0, 5, 4)
NSA_FRACTION = 0.8
NSA_PAGE = 64
NSA_SCALE_BLOCK = 128  # values a float32 scale covers (NSATokenToKVPool.quant_block_size)
NSA_SCALE_BYTES = 4


def nsa(inf: Inference | None, a: ModelArch | None) -> bool:
    """SGLang keeps this model's cache in its NSA pool (a lightning indexer, from SGLANG_NSA)."""
    return (inf is not None and inf.engine == "sglang" and a is not None and a.has_indexer
            and not inf.sglang_before(SGLANG_NSA))


def nsa_kv_precision(inf: Inference, gpu: GPU | None) -> str:
    """The NSA pool's dtype: fp8 on Blackwell (whatever was asked before SGLANG_NSA_FP8_ONLY_AUTO, else unless
    inference.kvCachePrecision says otherwise), the spec's elsewhere."""
    blackwell = gpu is not None and gpu.architecture == "blackwell"
    asked = "kv_cache_precision" in inf.model_fields_set
    if blackwell and (inf.sglang_before(SGLANG_NSA_FP8_ONLY_AUTO) or not asked):
        return "fp8"
    return inf.kv_cache_precision or "bf16"


def nsa_index_bytes(a: ModelArch) -> int:
    """The indexer's cached key a token and layer: index_head_dim fp8 bytes and a float32 scale a 128."""
    return a.index_head_dim + a.index_head_dim // NSA_SCALE_BLOCK * NSA_SCALE_BYTES


def nsa_layer_bytes(inf: Inference, a: ModelArch, precision: str) -> tuple[int, int]:
    """(profile_max_num_token's cell, what the NSA pool allocates) a token and layer, in bytes."""
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    cell = latent * KV_BYTES[precision]
    if not inf.sglang_before(SGLANG_NSA_INDEXER_CELL):
        cell += nsa_index_bytes(a)
    record = (a.kv_lora_rank + a.kv_lora_rank // NSA_SCALE_BLOCK * NSA_SCALE_BYTES + 2 * a.qk_rope_head_dim
              if precision == "fp8" else latent * KV_BYTES[precision])
    return cell, record + nsa_index_bytes(a)


def nsa_fraction(inf: Inference, a: ModelArch | None) -> float | None:
    """The mem_fraction_static SGLang sets for an NSA model over the default and the flag (0.5.3), else None."""
    return NSA_FRACTION if nsa(inf, a) and inf.sglang_before(SGLANG_NSA_FRACTION_UNTIL) else None


# --- Gated DeltaNet hybrids (Qwen3-Next, Qwen3.5/3.6): a state a request beside the token pool ------------------------
# profile_max_num_token (model_runner.py, model_runner_kv_cache_mixin.py from 0.5.7; read in 0.5.3, 0.5.4 and 0.5.10):
# the cell counts the full-attention layers only (full_attention_layer_ids), and the rest memory first pays
# max_mamba_cache_size request states of mamba_cache_per_req each (handle_max_mamba_cache): every linear layer's conv
# state in bfloat16 (SGLANG_MAMBA_CONV_DTYPE) and temporal state in float32 (configs/mamba_utils.py mamba2_state_dtype:
# float32 unless the config's mamba_ssm_dtype says otherwise). Through 0.5.3 these models run without radix cache and
# max_mamba_cache_size is --max-running-requests or 512 (model_runner.__init__); from 0.5.4, with radix cache, the
# rest splits mamba_full_memory_ratio (server_args, 0.9) to 1 between the states and the tokens,
# max_mamba_cache_size = floor(rest x 0.9 / 1.9 / mamba_cache_per_req), and max_num_reqs is at most
# max_mamba_cache_size // MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO (3; 1 without radix cache). The Mamba-2 hybrids
# (NemotronH, Falcon-H1) kept radix cache off longer and are not modelled here.
SGLANG_GDN_RATIO_SPLIT = (0, 5, 4)
MAMBA_FULL_MEMORY_RATIO = 0.9
MAMBA_CACHE_SIZE_DEFAULT = 512
MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO = 3


def kv_layers(a: ModelArch, stage_layers: int) -> int:
    """The layers of a stage SGLang's token pool holds: the full-attention ones of a Gated DeltaNet hybrid, else all."""
    if not gated_delta_net(a):
        return stage_layers
    return min(stage_layers, a.num_layers - a.linear_attention_layers)


def gdn_state_bytes(a: ModelArch, tensor: int, stage_layers: int) -> int:
    """mamba_cache_per_req on a rank: the stage's linear layers' states, the temporal one in float32."""
    return state_bytes(a, tensor, float32_state=True) * (stage_layers - kv_layers(a, stage_layers))


def gdn_states(inf: Inference, rest: int, per_request: int) -> int:
    """max_mamba_cache_size: the request states SGLang allocates out of `rest` bytes."""
    if inf.sglang_before(SGLANG_GDN_RATIO_SPLIT):
        return inf.max_num_seqs or MAMBA_CACHE_SIZE_DEFAULT
    if rest <= 0 or per_request <= 0:
        return 0
    return int(rest * MAMBA_FULL_MEMORY_RATIO / (1 + MAMBA_FULL_MEMORY_RATIO)) // per_request


def gdn_running_cap(inf: Inference, states: int) -> int:
    """The requests the states serve at once (_resolve_max_num_reqs): a third of them with radix cache (0.5.4 on)."""
    if inf.sglang_before(SGLANG_GDN_RATIO_SPLIT):
        return states
    return states // MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO


def layer_split(a: ModelArch, stage_layers: int) -> tuple[int, int]:
    """(full, sliding) layers of a stage, full-attention ones first (as kvcache.kv_cache_bytes counts them)."""
    full = min(stage_layers, a.num_layers - a.sliding_window_layers)
    return full, stage_layers - full


def cell_bytes(per_layer: int, stage_layers: int, a: ModelArch, hybrid: bool) -> int:
    """Bytes of pool one max_total_num_tokens token costs: every layer, or with the hybrid pool its full layers and
    SGLANG_SWA_RATIO of a token in each sliding one."""
    if not hybrid:
        return per_layer * stage_layers
    full, swa = layer_split(a, stage_layers)
    return int(round(per_layer * (full + SGLANG_SWA_RATIO * swa)))


def pool_tokens(pool: int, per_layer: int, stage_layers: int, a: ModelArch, hybrid: bool, page: int) -> int:
    """max_total_num_tokens from the pool's bytes: profile_max_num_token's rest_memory // cell_size (every layer),
    rounded down to the page, then with the hybrid pool re-split into full-layer tokens (set_num_tokens_hybrid_swa)."""
    if pool <= 0 or per_layer <= 0 or stage_layers <= 0:
        return 0
    tokens = pool // (per_layer * stage_layers) // page * page
    if not hybrid:
        return tokens
    full, swa = layer_split(a, stage_layers)
    return int(tokens * stage_layers / (SGLANG_SWA_RATIO * swa + full)) // page * page


def max_num_reqs(inf: Inference, tokens: int, context: int) -> int:
    """init_memory_pool's default request slots: 512 per context of pool tokens, between 2048 and the cap."""
    cap = 5120 if inf.sglang_before(SGLANG_REQ_4096) else 4096
    return min(max(int(tokens / max(context, 1) * 512), 2048), cap)


def req_table_rows(inf: Inference, reqs: int) -> int:
    spare = not inf.sglang_before(SGLANG_REQ_4096) and inf.sglang_before(SGLANG_REQ_NO_SPARE_ROW)
    return reqs + 1 if spare else reqs


def req_to_token_bytes(inf: Inference, reqs: int, context: int) -> int:
    """ReqToTokenPool's int32 table: rows x (context_len + 4, 8 before 0.3.6)."""
    width = context + (8 if inf.sglang_before(SGLANG_REQ_4096) else 4)
    return req_table_rows(inf, reqs) * width * REQ_INDEX_BYTES


def max_running_requests(inf: Inference, tokens: int, reqs: int) -> int:
    """The scheduler's limit without --max-running-requests: min(max_total_num_tokens // 2, the table's rows; one
    fewer row before 0.3.6) (tp_worker.py TpModelWorker.__init__; model_runner.py from 0.5.8)."""
    rows = req_table_rows(inf, reqs) - (1 if inf.sglang_before(SGLANG_REQ_4096) else 0)
    return max(0, min(tokens // 2, rows))


def piecewise_graph_sizes(max_tokens: int) -> list[int]:
    """The token counts piecewise CUDA graphs are captured for up to `max_tokens` (server_args.py
    _generate_piecewise_cuda_graph_tokens, 0.5.10; _generate_prefill_cuda_graph_batch_sizes from 0.5.16)."""
    sizes = (list(range(4, 33, 4)) + list(range(48, 257, 16)) + list(range(288, 513, 32))
             + list(range(576, 1024 + 1, 64)) + list(range(1280, 4096 + 1, 256))
             + list(range(4608, max_tokens + 1, 512)))
    return [s for s in sizes if s <= max_tokens]


def piecewise_reserve_mib(inf: Inference, a: ModelArch | None, chunk: int, pipeline: int) -> float:
    """What the default fraction reserves for piecewise CUDA graphs (SGLANG_PIECEWISE_RESERVE), in MiB."""
    if inf.engine != "sglang" or inf.sglang_before(SGLANG_PIECEWISE_RESERVE) or pipeline > 1 \
            or inf.data_parallel_attention:
        return 0.0
    if a is not None and a.vision_parameters:
        return 0.0
    if a is not None and a.is_mla:
        return PIECEWISE_MLA_MIB
    return float(len(piecewise_graph_sizes(chunk)) * PIECEWISE_MIB_PER_SIZE)


def speculative_reserve_mib(inf: Inference) -> float:
    """The MiB SGLang's default mem_fraction_static sets aside for speculative decoding
    (SGLANG_SPECULATIVE_RESERVE_MIB)."""
    if inf.engine != "sglang":
        return 0.0
    table = next((t for v, t in SGLANG_SPECULATIVE_RESERVE_MIB if not inf.sglang_before(v)), None)
    return float(table.get(inf.speculative_method or "", 0)) if table else 0.0


# --- DP attention (inference.dataParallelAttention: --enable-dp-attention with --dp-size) -------------------------
# Read in the 0.4.1, 0.4.3-0.4.8, 0.5.3, 0.5.5-0.5.8, 0.5.10, 0.5.16, 0.5.19 and 0.5.23 wheels (server_args.py;
# models/deepseek_v2.py, the model DP attention was written for; managers/tp_worker.py; data_parallel_controller.py).
# Every GPU of the tensor group is one DP rank's scheduler (launch_tensor_parallel_process) with its own pool and
# request table, sized as without DP attention (profile_max_num_token) from what its weights leave.
# - Attention: split over attn_tp = tp / dp GPUs (get_attention_tp_size; DeepseekV2AttentionMLA's q_b/kv_b/o
#   projections with tp_size=attn_tp_size from 0.4.5); 0.4.1-0.4.4 force dp_size = tp_size (spec/releases.py
#   SGLANG_DP_ATTENTION_SIZE) and build them ReplicatedLinear (use_dp=True): whole on every GPU, the same as attn_tp 1.
#   MoE experts, shared experts and dense MLPs stay split over the whole tp group (moe_dense_tp_size unset).
# - KV pool: a rank caches its own requests at attn_tp for the KV heads (model_config.get_num_kv_heads(
#   get_attention_tp_size())); MLA's latent is whole on every rank either way.
# - Embedding: VocabParallelEmbedding(enable_tp=not enable_dp_attention), whole on every GPU, before 0.5.8; from 0.5.8
#   split over the attention group (use_attn_tp_group=is_dp_attention_enabled(); get_embedding_tp_kwargs from 0.5.16).
# - lm_head: ReplicatedLinear before 0.4.5, then ParallelLMHead over the whole tp group (use_attn_tp_group only with
#   --enable-dp-lm-head, off by default).
SGLANG_DP_EMBEDDING_ATTN_TP = (0, 5, 8)
SGLANG_DP_LM_HEAD_SPLIT = (0, 4, 5)
# - The running limit: from 0.4.2 a given --max-running-requests is divided among the DP ranks (tp_worker.py
#   `server_args.max_running_requests // (server_args.dp_size if server_args.enable_dp_attention else 1)`; not in
#   0.4.1); the request table keeps the whole value's rows.
# - The default mem_fraction_static's reserve: 4 GiB more in 0.4.8-0.5.2 (`if self.enable_dp_attention:
#   reserved_mem += 4 * 1024`); from 0.5.3 cuda_graph_max_bs x dp x 3 MiB more, and x 1.5 more above a graph batch of
#   300 ("DP attention needs more padding for some operations"; reserve_for_graph_mb in 0.5.23), before the 10 GiB
#   floor. Piecewise CUDA graphs are off under DP attention (SGLANG_PIECEWISE_RESERVE). The chunk SGLang halves (before
#   0.4.5) or divides by dp (after) is taken after the fraction is set (_handle_data_parallelism after
#   _handle_gpu_memory_settings), so the fraction's reserve sees the chunk as given.
SGLANG_DP_RUNNING_SHARE = (0, 4, 2)
SGLANG_DP_RESERVE_GIB = (0, 4, 8)
SGLANG_DP_RESERVE_BY_GRAPHS = (0, 5, 3)
DP_RESERVE_GIB = 4
DP_GRAPH_MIB = 3
DP_LARGE_GRAPH_MIB = 1.5
DP_LARGE_GRAPH_BS = 300


def dp_attention(inf: Inference | None) -> int:
    """SGLang's DP attention ranks of a tensor group (1: none)."""
    return (inf.data_parallel_attention or 1) if inf is not None and inf.engine == "sglang" else 1


def attention_tensor(inf: Inference | None, tensor: int) -> int:
    """The GPUs one attention layer is split over: attn_tp = tp / dp under DP attention, else the tensor group."""
    return max(1, tensor // dp_attention(inf))


def vocab_shards(inf: Inference, tensor: int) -> tuple[int, int]:
    """(embedding, lm_head) shards under DP attention (SGLANG_DP_EMBEDDING_ATTN_TP, SGLANG_DP_LM_HEAD_SPLIT)."""
    embedding = 1 if inf.sglang_before(SGLANG_DP_EMBEDDING_ATTN_TP) else attention_tensor(inf, tensor)
    return embedding, 1 if inf.sglang_before(SGLANG_DP_LM_HEAD_SPLIT) else tensor


def dp_running_cap(inf: Inference) -> int | None:
    """A rank's share of a given --max-running-requests under DP attention (SGLANG_DP_RUNNING_SHARE; None: no cap
    of its own)."""
    dp = dp_attention(inf)
    if dp == 1 or inf.max_num_seqs is None or inf.sglang_before(SGLANG_DP_RUNNING_SHARE):
        return None
    return inf.max_num_seqs // dp


def dp_reserve_mib(inf: Inference, graph_bs: int) -> float:
    """What the default mem_fraction_static reserves more for DP attention, in MiB (SGLANG_DP_RESERVE_GIB)."""
    dp = dp_attention(inf)
    if dp == 1 or inf.sglang_before(SGLANG_DP_RESERVE_GIB):
        return 0.0
    if inf.sglang_before(SGLANG_DP_RESERVE_BY_GRAPHS):
        return float(DP_RESERVE_GIB * 1024)
    return graph_bs * dp * (DP_GRAPH_MIB + (DP_LARGE_GRAPH_MIB if graph_bs > DP_LARGE_GRAPH_BS else 0))


# --quantization fp8 on a 16-bit checkpoint (inference.onlineQuantization): SGLang's DefaultModelLoader builds the
# whole model on the GPU first (_initialize_model under `with target_device`), and Fp8LinearMethod.create_weights /
# Fp8MoEMethod.create_weights make each weight `torch.float8_e4m3fn if self.is_checkpoint_fp8_serialized else
# params_dtype`, so every layer is 16-bit until load_weights_and_postprocess has loaded all of them and calls
# process_weights_after_loading, which quantizes (layers/quantization/fp8.py, model_loader/loader.py; read in the
# 0.4.9 and 0.5.16 wheels). LayeredModelLoader (--load-format layered) quantizes layer by layer instead.
def online_quantization_refusal(inf: Inference, precision: str, a: ModelArch, weights_16bit: int,
                                free: int) -> str | None:
    """Why SGLang would run out of memory creating a 16-bit checkpoint's weights before quantizing them to fp8 at
    load: `weights_16bit`, this rank's weights at 16 bits, beyond `free`, the GPU's memory less the CUDA context."""
    if inf.engine != "sglang" or not inf.online_quantization or precision != "fp8" or a.quantization is not None:
        return None
    if weights_16bit <= free:
        return None
    return (f"sglang would run out of memory loading the model: --quantization fp8 on a 16-bit checkpoint creates "
            f"every layer's weights at 16 bits and quantizes them only once all are loaded (fp8.py create_weights, "
            f"loader.py load_weights_and_postprocess): {weights_16bit / 2**30:.1f} GiB a GPU against "
            f"{free / 2**30:.1f} GiB free; load an fp8 checkpoint, use --load-format layered, or more tensor "
            f"parallelism")
