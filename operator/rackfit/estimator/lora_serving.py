"""Serving with LoRA adapters (vLLM --enable-lora, SGLang --lora-paths): what the adapters' GPU buffers and their
kernels take from the KV cache's budget.

Neither engine grows memory per adapter loaded: each preallocates, when the model is loaded, stacked buffers for a
fixed number of adapters of a fixed largest rank in every wrapped layer, and copies an adapter into a free slot when a
request needs it (the adapters themselves wait in CPU memory: vLLM's --max-cpu-loras, SGLang's host copies). So the
cost is max_loras x max_lora_rank x (each wrapped layer's input + output width) in the model's 16-bit dtype, whatever
the adapters' own ranks.

Pure: no I/O. Every mechanism names the engine source it comes from. Unset (inference.maxLoras and maxLoraRank both
None) means no LoRA and every function returns 0 (or 1 graph case): the plans without LoRA are unchanged.
"""

from __future__ import annotations

from rackfit.estimator.activations import attention_dims
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.spec import Inference

# vllm/config/lora.py LoRAConfig (vllm/config/__init__.py before 0.11.0): max_lora_rank 16, max_loras 1; lora_dtype
# "auto" is the model's dtype (16-bit, also for a quantized checkpoint: LoRA runs in the activations' dtype).
VLLM_DEFAULT_RANK = 16
VLLM_DEFAULT_MAX_LORAS = 1
# SGLang python/sglang/srt/server_args.py: max_loras_per_batch 8; max_lora_rank, unset, is the largest rank among the
# --lora-paths adapters (lora/lora_manager.py init_lora_shapes), which rackfit cannot read: 16 as vLLM's default.
SGLANG_DEFAULT_MAX_LORAS = 8
LORA_BYTES = 2
# vLLM's extra vocabulary for LoRA tokens (LoRAConfig.lora_extra_vocab_size, 256; deprecated in 0.11.0, gone from
# 0.12.0, read in the 0.10.1, 0.11.0, 0.11.1 and 0.12.0 wheels): VocabParallelEmbeddingWithLoRA and
# LogitsProcessorWithLoRA each hold an embeddings_tensors buffer of max_loras x 256 x hidden, and the embedding's
# lora_a_stacked covers the base vocabulary plus the 256.
EXTRA_VOCAB = 256
EXTRA_VOCAB_UNTIL = (0, 12)
# vLLM V0 from 0.6.4 to 0.7.x (V1 is the default from 0.8.0): vllm/worker/model_runner.py load_model measures
# model_memory_usage inside `with DeviceMemoryProfiler()` around get_model only, then builds the
# LRUCacheWorkerLoRAManager and create_lora_manager (which allocates the stacked buffers) after it (read in 0.7.3: lines
# 1110-1143), and memory_profiling (vllm/utils.py) counts the weights from that argument and the activations as the
# torch peak's increase during profile_run, measured from after the buffers: the buffers are counted nowhere, and come
# out of the 1 - gpu_memory_utilization share (vllm-project/vllm issue 14450: "different LoRa Rank and Max LoRas did not
# affect the number of kv cache blocks"; jeejeelee: "V1 of LoRA should not have this issue"). Before 0.6.4 worker.py
# took peak_memory = init_gpu_memory - free after the profile, everything counted. V1 (gpu_model_runner.py load_model:
# the DeviceMemoryProfiler block wraps load_lora_model, read in 0.19.0) counts them in "Model loading took", and so
# does V0 from 0.8.0 (VLLM_USE_V1=0: create_lora_manager inside the profiler block, read in 0.8.0 and 0.10.2): the end
# of this window is a release, not the engine.
V0_LORA_UNCOUNTED = ((0, 6, 4), (0, 8))
# vLLM from 0.11.1 captures every CUDA graph twice with LoRA on (vllm/config/compilation.py cudagraph_specialize_lora,
# default True, absent in 0.11.0): v1/cudagraph_dispatcher.py builds the capture keys over lora_cases (without and
# with LoRA; from 0.19.0 get_captured_lora_counts(max_loras, specialize_active_lora) gives [max_loras + 1] beside the
# no-LoRA case while LoRAConfig.specialize_active_lora keeps its default False), so each captured size's pieces are
# captured, and keep their private memory, once per case.
GRAPH_LORA_CASES_FROM = (0, 11, 1)
GRAPH_LORA_CASES = 2
# The punica kernels' shrink step (vllm/lora/punica_wrapper/punica_gpu.py add_lora_linear: `buffer =
# torch.zeros((len(output_slices), x.size(0), r), dtype=torch.float32)`): one fp32 row of max_lora_rank per token and
# output slice, live while the layer runs; qkv's three slices are the widest. The profile run's dummy LoRAs
# (v1/worker/lora_model_runner_mixin.py maybe_profile_with_lora / maybe_dummy_run_with_lora, add_dummy_lora: rank
# max_lora_rank, one per slot) are built on the CPU and copied into the stacked buffers, so they add nothing beside.
SHRINK_SLICES = 3
# vLLM wraps FusedMoE with FusedMoEWithLoRA from 0.11.1 (vllm/lora/layers/fused_moe.py, absent from the 0.11.0 wheel;
# read in 0.11.1, 0.12.0 and 0.19.0 _create_lora_a_weights / _create_lora_b_weights): per slot and local expert,
# w13_lora_a_stacked (gate and up: 2 slices) rank x hidden, w13_lora_b_stacked intermediate_size_per_partition x rank,
# w2_lora_a_stacked rank x intermediate_size_per_partition and w2_lora_b_stacked hidden x rank. Before it the routed
# experts take no LoRA; the router (a ReplicatedLinear) and shared experts (linear layers) are wrapped in every release.
MOE_LORA_FROM = (0, 11, 1)
SHRINK_BYTES = 4
# The punica wrapper's metadata, sized by max_num_batched_tokens and max_num_seqs (punica_wrapper/punica_base.py
# PunicaWrapperBase.__init__: _token_lora_indices and _embeddings_indices (2 rows), int64 per token, _sampler_indices
# and _sampler_indices_padded, int64 per sequence; ops/triton_ops/lora_kernel_metadata.py LoRAKernelMeta.make:
# token_lora_mapping and token_indices_sorted_by_lora_ids, int32 per token, for the prefill and the decode meta).
META_BYTES_PER_TOKEN = 8 * 3 + 4 * 2 * 2
META_BYTES_PER_SEQ = 8 * 2


def lora_slots(inf: Inference) -> int:
    """GPU slots: vLLM's --max-loras (LoRAModelManager.lora_slots), SGLang's --max-loras-per-batch."""
    if inf.max_loras is not None:
        return inf.max_loras
    return SGLANG_DEFAULT_MAX_LORAS if inf.engine == "sglang" else VLLM_DEFAULT_MAX_LORAS


def lora_rank(inf: Inference) -> int:
    return inf.max_lora_rank or VLLM_DEFAULT_RANK


def layer_lora_elements(a: ModelArch, tensor: int, rank: int, fully_sharded: bool = False, mlp: bool = True) -> int:
    """One slot's A and B elements in one decoder layer on one tensor rank, as vLLM's BaseLinearLayerWithLoRA
    .create_lora_weights stacks them (vllm/lora/layers/base_linear.py; layers.py before 0.11.0): lora_a_stacked
    (max_loras, 1, A rows, input_size) and lora_b_stacked (max_loras, 1, output_size, max_lora_rank), one pair per
    packed slice. A column-parallel layer (qkv_proj's 3 slices, gate_up_proj's 2) sees the whole input and its rank's
    share of the output; a row-parallel one (o_proj, down_proj) its share of the input and the whole output;
    fully_sharded_loras splits the column layers' A rank and the row layers' B output over tensor as well. SGLang's
    LoRAMemoryPool (python/sglang/srt/lora/mem_pool.py get_lora_A_shape / get_lora_B_shape: max_loras_per_batch x
    stacked x max_lora_rank x input, x output x max_lora_rank, split over tensor the same way) holds as many."""
    t = tensor
    h = a.hidden_size
    q, kv = attention_dims(a)
    if not a.is_mla:  # QKVParallelLinear replicates the KV heads where tensor exceeds them
        kv = 2 * max(1, a.num_key_value_heads // t) * a.head_dim * t
    a_rank = rank // t if fully_sharded else rank
    elements = 3 * a_rank * h + rank * q // t  # qkv A (3 slices, whole hidden), o A (its share of the heads)
    elements += rank * ((q + kv) // t) + rank * (h // t if fully_sharded else h)  # qkv B, o B
    if mlp:
        inter = a.intermediate_size
        slices = 2 if a.gated_mlp else 1
        elements += slices * a_rank * h + rank * inter // t  # gate_up A, down A
        elements += rank * slices * inter // t + rank * (h // t if fully_sharded else h)  # gate_up B, down B
    return elements


def moe_lora_elements(inf: Inference, a: ModelArch, layout: Layout, rank: int, fully_sharded: bool = False) -> int:
    """One slot's LoRA elements in a mixture-of-experts layer's MLP on one rank, beside its attention: the router
    (ReplicatedLinear: rank x hidden and experts x rank, whole), the shared experts as a gated MLP of their width
    (column and row parallel), and for vLLM from MOE_LORA_FROM the routed experts (local experts: all of them split over
    tensor, or experts / expert degree whole under expert parallelism). SGLang's routed-expert LoRA (gate_up_proj_moe,
    down_proj_moe in newer mem_pool.py) is counted only for adapters that target it: not counted."""
    t, h = layout.tensor, a.hidden_size
    a_rank = rank // t if fully_sharded else rank  # column layers' A rank
    out = h // t if fully_sharded else h  # row layers' B output
    elements = rank * h + a.num_experts * rank  # the router
    if a.num_shared_experts:
        width = a.num_shared_experts * a.moe_intermediate_size
        elements += 2 * a_rank * h + rank * width // t + rank * 2 * width // t + rank * out
    if inf.engine == "vllm" and not inf.vllm_before(MOE_LORA_FROM):
        local = a.num_experts // layout.expert if layout.expert > 1 else a.num_experts
        inter = a.moe_intermediate_size // (1 if layout.expert > 1 else t)
        elements += local * (2 * a_rank * h + 2 * inter * rank + rank * inter + out * rank)
    return elements


def vocab_lora_elements(inf: Inference, a: ModelArch, rank: int, first: bool, last: bool) -> int:
    """One vLLM slot's embedding and lm_head LoRA elements: the models' embedding_modules (embed_tokens, lm_head)
    are wrapped in every release (lora/utils.py get_supported_lora_modules) by VocabParallelEmbeddingWithLoRA
    (lora_a_stacked vocab x rank, lora_b_stacked hidden x rank) and LogitsProcessorWithLoRA (lora_a_stacked rank x
    hidden, lora_b_stacked the whole vocabulary x rank: the logits are gathered), plus the extra vocabulary before
    EXTRA_VOCAB_UNTIL. SGLang wraps them only for adapters that target them: none counted."""
    if inf.engine != "vllm":
        return 0
    extra = EXTRA_VOCAB if inf.vllm_before(EXTRA_VOCAB_UNTIL) else 0
    h = a.hidden_size
    elements = 0
    if first:
        elements += (a.vocab_size + extra) * rank + h * rank + extra * h
    if last:
        elements += rank * h + a.vocab_size * rank + extra * h
    return elements


def lora_buffer_bytes(inf: Inference, a: ModelArch, layout: Layout, fully_sharded: bool = False) -> int:
    """The stacked A/B buffers on the heaviest rank: every decoder layer of its pipeline stage (a mixture-of-experts
    layer's MLP as moe_lora_elements says), and the embedding and lm_head for vLLM (one stage holds both where pipeline
    is 1, else the last stage's lm_head), x slots, in the model's 16-bit dtype."""
    if not inf.lora_on:
        return 0
    rank = lora_rank(inf)
    stage_layers = heaviest_stage_layers(a.num_layers, layout.pipeline)
    moe_layers = min(stage_layers, a.moe_layers) if a.is_moe else 0
    per_slot = ((stage_layers - moe_layers) * layer_lora_elements(a, layout.tensor, rank, fully_sharded)
                + moe_layers * (layer_lora_elements(a, layout.tensor, rank, fully_sharded, mlp=False)
                                + moe_lora_elements(inf, a, layout, rank, fully_sharded))
                + vocab_lora_elements(inf, a, rank, layout.pipeline == 1, True))
    return lora_slots(inf) * per_slot * LORA_BYTES


def lora_meta_bytes(inf: Inference, s: EngineSettings) -> int:
    """vLLM's punica metadata (META_BYTES_PER_TOKEN, META_BYTES_PER_SEQ), allocated with the LoRA manager."""
    if not inf.lora_on or inf.engine != "vllm":
        return 0
    return s.max_num_batched_tokens * META_BYTES_PER_TOKEN + s.max_num_seqs * META_BYTES_PER_SEQ


def lora_held_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings) -> int:
    """What LoRA adds to the memory counted with the weights, before the KV cache is sized: vLLM V1's "Model loading
    took" (and V0 before 0.6.4: everything), SGLang's LoRA manager built in ModelRunner.initialize before
    init_memory_pool (its profile_max_num_token reads the free memory after it). V0 from 0.6.4 counts none
    (V0_LORA_UNCOUNTED)."""
    if not inf.lora_on or inf.engine not in ("vllm", "sglang"):
        return 0
    first, until = V0_LORA_UNCOUNTED
    if inf.engine == "vllm" and not inf.vllm_before(first) and inf.vllm_before(until):
        return 0
    return lora_buffer_bytes(inf, a, layout) + lora_meta_bytes(inf, s)


def lora_profile_bytes(inf: Inference, s: EngineSettings) -> int:
    """What vLLM V1's profile run with dummy LoRAs adds to the forward's peak: the shrink buffer (SHRINK_SLICES fp32
    rows of max_lora_rank per token of max_num_batched_tokens)."""
    if not inf.lora_on or inf.engine != "vllm" or inf.vllm_v0:
        return 0
    return SHRINK_SLICES * s.max_num_batched_tokens * lora_rank(inf) * SHRINK_BYTES


def lora_graph_cases(inf: Inference) -> int:
    """How many times vLLM captures each CUDA graph piece (GRAPH_LORA_CASES_FROM): 2 with LoRA from 0.11.1, else 1."""
    if not inf.lora_on or inf.engine != "vllm" or inf.vllm_before(GRAPH_LORA_CASES_FROM):
        return 1
    return GRAPH_LORA_CASES
