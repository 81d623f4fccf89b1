"""Serving with speculative decoding (vLLM --speculative-config, SGLang --speculative-algorithm): what the drafter
costs in GPU memory beside the target model.

- its weights: a separate draft model (method draft; SGLang STANDALONE), an EAGLE/EAGLE-3 head (one decoder layer and
  a fusing projection, sharing the target's embedding and, for EAGLE-1, its lm_head), or the checkpoint's own MTP
  layer (DeepSeek-V3's num_nextn_predict_layers, Qwen3-Next's, GLM-4.5's); ngram has none;
- its KV cache: vLLM V1 adds the drafter's attention layers to the KV cache spec, so each cached token costs the
  target's layers plus the draft's out of the one budget; SGLang gives the draft worker its own pool of the target's
  token count (plus headroom) after the target's pool is sized, out of the 1 - mem_fraction_static reserve, which its
  default fraction enlarges for speculative decoding;
- the profile run's rejection sampler (vLLM V1 _dummy_sampler_run) and the drafter's CUDA graphs;
- under V0 at tensor/pipeline > 1, the other ranks' CUDA contexts on the first GPU (v0_peer_contexts).

Pure: no I/O. Every mechanism names the engine source it comes from. Unset (inference.speculativeMethod None or
"none") means no speculative decoding and every function returns 0: the plans without it are unchanged.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.context import context_before_cublas
from rackfit.estimator.kvcache import kv_bytes_per_token_layer
from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.estimator.weights import weight_bytes
from rackfit.models import ModelArch, resolve
from rackfit.spec import Inference

HEAD_BYTES = 2  # EAGLE heads and MTP's projections load in the model's 16-bit dtype
# vLLM's default proposals when num_speculative_tokens is not given: the MTP layer's own count
# (vllm/config/speculative.py: n_predict from num_nextn_predict_layers, 1 for DeepSeek-V3), else rackfit's 3
# (vLLM requires it for the other methods; SGLang's auto-chosen steps for Llama are 3-5).
DEFAULT_TOKENS = {"mtp": 1}
DEFAULT_OTHER_TOKENS = 3
# EAGLE-3 heads keep their own lm_head over a reduced draft vocabulary (vllm/model_executor/models/llama_eagle3.py
# Eagle3LlamaForCausalLM: ParallelLMHead(draft_vocab_size, hidden) and the d2t int64 buffer of draft_vocab_size;
# eagle.py load_model shares it with the target's only where the shapes match). The published EAGLE-3 heads
# (yuhuili/EAGLE3-LLaMA3.1-Instruct-8B and the SpecForge recipes) use draft_vocab_size 32000.
EAGLE3_DRAFT_VOCAB = 32000
# vLLM V1's profile samples one draft token per request (gpu_model_runner.py _dummy_sampler_run: draft_token_ids
# [[0] for each request], read in 0.8.5, 0.10.1, 0.11.0 and 0.19.0): target_logits = torch.randn(requests, vocab,
# logits' dtype) beside the sampler's bf16 logits, then rejection_sampler.compute_probs runs apply_top_k_top_p (the
# native sort, vllm/v1/sample/ops/topk_topp_sampler.py) on it and softmax(dtype=float32), and sample_recovered_tokens
# an fp32 q of requests x vocab.
SPEC_LOGITS_BYTES = 2  # the sampler's bf16 logits, still held; target_logits' own 2 bytes are in the sort's peak
SPEC_PROBS_BYTES = 2 + 4 + 4  # target_logits, the fp32 probabilities and q, after the sort's buffers are freed
# SGLang's target and draft pools share indices (model_runner.py init_memory_pool, 0.4.6-0.5.6): the target's
# max_total_num_tokens becomes draft_runner_cache_size = the profiled tokens + max_num_reqs x speculative_num_steps x
# speculative_eagle_topk (draft) + max_num_reqs x speculative_num_draft_tokens (verify) + 100; from 0.5.7
# (model_runner_kv_cache_mixin.py) draft_runner_cache_size is the target's max_total_num_tokens, no headroom.
SGLANG_HEADROOM = 100
SGLANG_HEADROOM_RELEASES = ((0, 4, 6), (0, 5, 7))
# server_args.py sets max_running_requests to 48 when unset for EAGLE, EAGLE3, NEXTN and STANDALONE ("Max running
# requests is reset to 48 for speculative decoding", from 0.4.6; read in 0.4.6, 0.5.5-0.5.9, 0.5.12).
SGLANG_SPEC_RUNNING = 48
SGLANG_SPEC_RUNNING_FROM = (0, 4, 6)
# From 0.5.14 (sgl-project/sglang PRs 23862 and 28855, "account draft weights in --mem-fraction-static"): the
# scheduler loads the target's and the draft's weights before the pool is profiled, so the draft's weights come out of
# mem_fraction_static's budget (model_runner_kv_cache_mixin.py: "If using speculative decoding, draft weights are now
# counted"), and pool_configurator.py scales the target's cell_size by (1 + eagle_draft_num_layers / num_layers) for
# EAGLE and STANDALONE ("Assumes draft and target share the same per-layer KV size"), the draft's pool inside it.
SGLANG_DRAFT_COUNTED = (0, 5, 14)
# V0's SpecDecodeWorker.__init__ builds an AsyncMetricsCollector (vllm/spec_decode/metrics.py, read in 0.4.1, 0.4.3,
# 0.6.1, 0.7.3 and 0.8.5) whose two counters are CPU tensors with pin_memory=is_pin_memory_available(), in the
# constructor ("We don't have a device set yet": init_gpu_tensors later takes the rank). Every worker runs that
# constructor (create_spec_worker) before init_device's torch.cuda.set_device(cuda:local_rank), so its first pinned
# allocation (cudaHostAlloc in torch's CachingHostAllocator, on the current device when no primary context exists yet,
# pytorch issue 21081) creates a CUDA context on device 0: every worker's CUDA_VISIBLE_DEVICES lists all the node's
# GPUs (the mp executor's inherited one; the Ray executor's node_gpus), so device 0 is local rank 0's GPU. vLLM PR
# 15886 ("Disable pin_memory in AsyncMetricsCollector", April 2025, closed unmerged): "On rank 0, it consumes
# approximately 1.4GB multiplied by the TP count". S1117's OOM (vLLM issue 8731, 0.6.1, tensor 4) lists the three
# peers at 1.62 GiB each on GPU 0. The source does not say why a context holding no tensor weighs that much (a bare
# one is 0.47 GiB on an A100: context.context_before_cublas); rackfit counts each peer at what PR 15886's two reporters
# measured of this very mechanism, the larger of that and a bare context.
# Where that context falls: the mp executor starts the workers, which build their SpecDecodeWorker first (0.7.3 waits
# for all in _run_workers("init_worker"); 0.6.1 and 0.6.6 build them at process start, ahead of the driver), before
# init_device, whose free-memory reading (init_gpu_memory; the baseline from 0.6.6) predates the profile, so the peers'
# contexts are outside util x total; 0.6.4's profile counts the device's whole non-torch memory (total - free - torch's,
# worker.py determine_num_available_blocks), the peers' inside it (0.6.5 not read, taken as 0.6.4).
PEERS_IN_PROFILE = ((0, 6, 4), (0, 6, 6))
V0_PEER_CONTEXT_BYTES = 1_400_000_000  # vllm PR 15886: "approximately 1.4GB multiplied by the TP count"


def proposals(inf: Inference) -> int:
    """num_speculative_tokens (vLLM), --speculative-num-steps (SGLang)."""
    if inf.speculative_tokens is not None:
        return inf.speculative_tokens
    return DEFAULT_TOKENS.get(inf.speculative_method or "", DEFAULT_OTHER_TOKENS)


def draft_arch(inf: Inference) -> ModelArch | None:
    """The draft model of method draft (preset, architecture or parameter count, as spec.model)."""
    if inf.speculative_method != "draft" or inf.draft_model is None:
        return None
    return resolve(inf.draft_model)


def _head_arch(a: ModelArch, moe: bool) -> ModelArch:
    """One decoder layer of the target's shape without embedding or lm_head (vocab 0): an EAGLE head's layer (a
    dense Llama layer of the target's widths: llama_eagle.py / llama_eagle3.py LlamaDecoderLayer) or, with `moe`, the
    MTP block (deepseek_mtp.py DeepSeekMultiTokenPredictorLayer.mtp_block: the target's decoder layer, MoE)."""
    update = {"num_layers": 1, "vocab_size": 0, "sliding_window": 0, "sliding_window_layers": 0,
              "first_dense_layers": 0, "vision_parameters": 0, "tie_word_embeddings": True}
    if not moe:
        update.update({"num_experts": 0, "num_experts_per_token": 0, "num_shared_experts": 0, "quantization": None})
    return a.model_copy(update=update)


def draft_layers(inf: Inference, a: ModelArch) -> int:
    """Attention layers the drafter adds: the draft model's, one for an EAGLE head (vLLM's eagle heads have one layer;
    num_hidden_layers of the published heads is 1) and one MTP layer (num_nextn_predict_layers of DeepSeek-V3,
    Qwen3-Next and GLM-4.5 is 1; vLLM reuses it for every proposal), none for ngram."""
    method = inf.speculative_method
    if method == "draft":
        d = draft_arch(inf)
        return d.num_layers if d is not None else 0
    return 1 if method in ("eagle", "eagle3", "mtp") else 0


def draft_weight_bytes(inf: Inference, a: ModelArch, layout: Layout, precision: str = "bf16",
                       gpu: GPU | None = None) -> int:
    """The drafter's weights on one rank.
    - draft: the draft model whole (its embedding and lm_head too), split over the target's tensor size
      (SpeculativeConfig.draft_tensor_parallel_size defaults to the target's), 16-bit unless its preset is quantized.
    - eagle: one dense decoder layer and fc = nn.Linear(2 x hidden, hidden), replicated (llama_eagle.py
      LlamaModel.fc); embed_tokens and lm_head are the target's (v1/spec_decode/eagle.py load_model: "Assuming the
      EAGLE head shares the same vocab embedding", "Loading EAGLE LM head weights from the target model").
    - eagle3: that layer with qkv_proj taking 2 x hidden (llama_eagle3.py LlamaDecoderLayer), fc (3 x hidden,
      hidden) and its own lm_head over EAGLE3_DRAFT_VOCAB plus the d2t int64 map.
    - mtp: the target's decoder layer in the checkpoint's quantization (MoE experts too), eh_proj nn.Linear(2 x
      hidden, hidden) replicated, and shared_head.head: its own ParallelLMHead of the whole vocabulary
      (deepseek_mtp.py SharedHead, read in 0.11.0); the embedding is the target's.
    - ngram: nothing."""
    method = inf.speculative_method
    if not inf.speculative_on or method == "ngram":
        return 0
    t = layout.tensor
    runtime = inf.engine
    gpu_arch = gpu.architecture if gpu is not None else None
    h = a.hidden_size
    one = layout.model_copy(update={"pipeline": 1})
    if method == "draft":
        d = draft_arch(inf)
        if d is None:
            return 0
        return weight_bytes(count_params(d), "bf16", one, d.num_layers, d, runtime, gpu_arch, inf)
    if method == "mtp":
        head = _head_arch(a, moe=True)
        layer = weight_bytes(count_params(head), precision, one, 1, head, runtime, gpu_arch, inf)
        return layer + HEAD_BYTES * (2 * h * h + a.vocab_size * h // t + 3 * h)
    head = _head_arch(a, moe=False)
    layer = weight_bytes(count_params(head), "bf16", one, 1, head, runtime, gpu_arch, inf)
    if method == "eagle":
        return layer + HEAD_BYTES * 2 * h * h
    wide_qkv = h * (a.query_width + 2 * a.kv_width) // t  # the second hidden of qkv_proj's 2 x hidden input
    return (layer + HEAD_BYTES * (wide_qkv + 3 * h * h + EAGLE3_DRAFT_VOCAB * h // t + h)
            + 8 * EAGLE3_DRAFT_VOCAB)


def draft_held_bytes(inf: Inference, a: ModelArch, layout: Layout, precision: str = "bf16",
               gpu: GPU | None = None) -> int:
    """What vLLM counts with the weights: V1's gpu_model_runner.py load_model loads the drafter
    (self.drafter.load_model(self.model)) inside the DeviceMemoryProfiler block that gives "Model loading took";
    V0's SpecDecodeWorker loads the proposer worker before profiling as well. SGLang from SGLANG_DRAFT_COUNTED
    likewise; before it SGLang loaded its draft worker after the target's pool was sized
    (sglang_draft_worker_bytes), so none here."""
    if not (inf.engine == "vllm" and inf.speculative_on) and not sglang_counted(inf):
        return 0
    return draft_weight_bytes(inf, a, layout, precision, gpu)


def draft_kv_bytes_per_token(inf: Inference, a: ModelArch, layout: Layout) -> int:
    """KV bytes the drafter's layers add per cached token on one rank: the draft model's layers at its own shape, an
    EAGLE head's or MTP layer's at the target's (the head's attention takes the target's head counts; DeepSeek's MTP
    layer is MLA like the rest). vLLM V1 puts these layers in the KV cache spec with the target's
    (gpu_model_runner.py get_kv_cache_spec walks every Attention layer of the vLLM config, the drafter's included:
    eagle.py load_model's draft_attn_layer_names), so the budget is split over target + draft layers."""
    layers = draft_layers(inf, a)
    if not layers:
        return 0
    d = draft_arch(inf)
    shape = d if d is not None else a  # the draft model's own shape, else the target's (EAGLE head, MTP layer)
    return kv_bytes_per_token_layer(shape, inf.kv_cache_precision, layout.tensor, mla_latent=True) * layers


def vllm_draft_kv_bytes_per_token(inf: Inference, a: ModelArch, layout: Layout) -> int:
    """vLLM's share: the draft layers' bytes join every token's (V1 and V0 alike: V0's draft worker sized its own
    blocks in the same count, spec_decode_worker.py determine_num_available_blocks splits by both workers' block
    sizes)."""
    if inf.engine != "vllm":
        return 0
    return draft_kv_bytes_per_token(inf, a, layout)


def sampler_profile_bytes(inf: Inference, a: ModelArch, requests: int, sort_peak: int) -> int:
    """vLLM V1's profile with speculative decoding: the bf16 logits and target_logits of one draft token per request,
    with the rejection sampler's native top-k/top-p sort (`sort_peak`: sampler.sampler_peak_bytes "sort" for
    these requests, target_logits included) or target_logits with its fp32 probabilities and q (SPEC_PROBS_BYTES),
    whichever is larger."""
    if inf.engine != "vllm" or not inf.speculative_on or inf.vllm_v0:
        return 0
    return requests * a.vocab_size * SPEC_LOGITS_BYTES + max(sort_peak, requests * a.vocab_size * SPEC_PROBS_BYTES)


def draft_graph_pieces(inf: Inference, a: ModelArch) -> int:
    """CUDA graph pieces the drafter adds per captured size in vLLM, one per attention layer plus one, as the
    target's. V1: its model is compiled like the target's (@support_torch_compile on the EAGLE/MTP/draft models) and
    captured at the target's sizes (gpu_model_runner.py capture_model runs self.drafter.dummy_run(num_tokens) for each
    size under capture). V0: the drafter is a MultiStepWorker (a Worker; spec_decode_worker.py create_worker, for a
    draft model and an EAGLE head alike) given the target's enforce_eager (config.py SpeculativeConfig
    maybe_create_spec_config), and SpecDecodeWorker.initialize_cache runs its initialize_cache after the target's, whose
    _warm_up_model captures its own graphs at the same batch sizes, after the cache, outside the budget (read in 0.4.1,
    0.4.3, 0.5.1, 0.5.5, 0.6.1, 0.6.6 and 0.7.0). ngram has no model."""
    if inf.engine != "vllm" or not inf.speculative_on:
        return 0
    layers = draft_layers(inf, a)
    return layers + 1 if layers else 0


def v0_peer_contexts(inf: Inference, layout: Layout, gpu: GPU | None) -> tuple[int, int]:
    """(outside the budget, inside it): the CUDA contexts the other tensor x pipeline ranks of a V0 speculative
    engine open on local rank 0's GPU (the AsyncMetricsCollector note above). rackfit's layout has no node count, so
    all the engine's ranks are taken as on one node (the mp executor's only case). (0, 0) elsewhere."""
    peers = layout.tensor * layout.pipeline - 1
    if inf.engine != "vllm" or not inf.vllm_v0 or not inf.speculative_on or peers == 0:
        return 0, 0
    held = peers * max(V0_PEER_CONTEXT_BYTES, context_before_cublas(gpu))
    start, end = PEERS_IN_PROFILE
    if not inf.vllm_before(start) and inf.vllm_before(end):
        return 0, held
    return held, 0


def sglang_counted(inf: Inference) -> bool:
    """SGLang counts the drafter inside mem_fraction_static's budget (SGLANG_DRAFT_COUNTED)."""
    return (inf.engine == "sglang" and inf.speculative_on and inf.speculative_method != "ngram"
            and not inf.sglang_before(SGLANG_DRAFT_COUNTED))


def sglang_cell_bytes(inf: Inference, a: ModelArch, cell: int, stage_layers: int) -> int:
    """The target's per-token cell scaled for the draft's pool from SGLANG_DRAFT_COUNTED: int(cell x (1 + draft
    layers / layers)); the cell itself before."""
    if not sglang_counted(inf) or stage_layers <= 0:
        return cell
    return int(cell * (1 + draft_layers(inf, a) / stage_layers))


def sglang_running_default(inf: Inference) -> int | None:
    """SGLang sets max_running_requests to SGLANG_SPEC_RUNNING when it is not given, for EAGLE, EAGLE3, NEXTN and
    STANDALONE ("Max running requests is reset to 48 for speculative decoding", server_args.py
    _handle_speculative_decoding), which then sizes the request table and the headroom."""
    if (inf.engine != "sglang" or not inf.speculative_on or inf.speculative_method == "ngram"
            or inf.sglang_before(SGLANG_SPEC_RUNNING_FROM)):
        return None
    return SGLANG_SPEC_RUNNING


def sglang_extra_tokens(inf: Inference, reqs: int) -> int:
    """SGLang's target pool grows to draft_runner_cache_size (SGLANG_HEADROOM): reqs x steps x topk (1) + reqs x
    draft tokens (steps + 1, SGLang's rule with topk 1) + 100. ngram (NGRAM) runs no draft worker: none."""
    first, until = SGLANG_HEADROOM_RELEASES
    if (inf.engine != "sglang" or not inf.speculative_on or inf.speculative_method == "ngram"
            or inf.sglang_before(first) or not inf.sglang_before(until)):
        return 0
    steps = proposals(inf)
    return reqs * steps + reqs * (steps + 1) + SGLANG_HEADROOM


def sglang_draft_worker_bytes(inf: Inference, a: ModelArch, layout: Layout, tokens: int,
                                     precision: str = "bf16", gpu: GPU | None = None) -> int:
    """SGLang's draft worker: its weights and a pool of `tokens` (draft_runner_cache_size) of its layers, allocated
    after the target's pool out of the 1 - mem_fraction_static reserve (eagle_worker.py EAGLEWorker builds its
    TpModelWorker with is_draft_worker=True after the target's), before SGLANG_DRAFT_COUNTED."""
    if inf.engine != "sglang" or not inf.speculative_on or sglang_counted(inf):
        return 0
    return draft_weight_bytes(inf, a, layout, precision, gpu) + tokens * draft_kv_bytes_per_token(inf, a, layout)
