"""vLLM's sampler: the profile run's sampler peak by the path each release takes, what the profile holds while it runs,
the new runner's per-request sampler state, and the sampler's warm-up after the KV cache.

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator.engine_profile import (
    ACT_BYTES,
    held_moe_workspace_bytes,
    moe_workspace_held,
    pipeline_buffer_bytes,
)
from rackfit.estimator.result import EngineSettings, Layout
from rackfit.estimator.vllm_runner import V2_RUNNER, v2_runner
from rackfit.models import ModelArch
from rackfit.spec import Inference

# The profile run's sampler (vllm/v1/worker/gpu_model_runner.py _dummy_sampler_run: top_k and top_p set for every
# dummy request, so both filters run), by the path each release takes on CUDA (v1/sample/ops/topk_topp_sampler.py):
# - FlashInfer (flashinfer_sample, top_k_top_p_sampling_from_logits): the bf16 logits, their fp32 copy, the masked
#   logits and the softmax, 14 bytes a logit.
# - PyTorch's sort (apply_top_k_top_p before 0.17.0, read in 0.8.5-0.13.0): at the scatter back, the bf16 logits (2),
#   the fp32 logits (4), the sorted values (4) and their int64 indices (8), both bool masks (2), the top-p softmax (4)
#   and the scattered logits (4): 28 bytes a logit (NATIVE_SAMPLER_BYTES). The peak is earlier, inside
#   `logits.sort()` itself (NATIVE_SORT_PEAK_BYTES): PyTorch sorts 128 rows or more as one segmented CUB sort
#   (aten/src/ATen/native/cuda/SortStable.cu launch_stable_sort_kernel -> segmented_sort_pairs), which allocates an
#   int64 index per logit to sort beside the keys (reverse_indices, 8), and CUB's DeviceSegmentedRadixSort::SortPairs
#   without a DoubleBuffer (at::cuda::cub::segmented_sort_pairs, aten/src/ATen/cuda/cub.cuh) takes temporary storage
#   for an alternate copy of the keys (fp32, 4) and the values (int64, 8): with the bf16 and fp32 logits and the
#   sort's outputs, 2 + 4 + 4 + 8 + 8 + 4 + 8 = 38 bytes a logit (NATIVE_SORT_TEMP_BYTES the 20 of them that live
#   only during the sort). vLLM 0.11.0's logs (S40, S45, S46: 5.64, 4.76, 7.38 GiB of activation peak, 38.4-38.9
#   bytes a logit with the hidden states held) agree; nothing was fitted to them. Below 128 rows PyTorch takes
#   segmented_sort_pairs_by_full_sort, whose buffers differ; rackfit counts the segmented sort's for every batch.
# - Triton from 0.17.0 (apply_top_k_top_p_triton for batches of 8 or more, read in 0.17.0-0.20.0 and 0.34.0): masks
#   the fp32 logits in place, so the bf16 logits (2, still held by _dummy_sampler_run), the fp32 logits (4),
#   forward_native's softmax (4) and random_sample's exponential draws (4): 14 bytes a logit, plus the kernel's
#   per-program buffer of fp32 logits rows (_TRITON_BUFFER_CACHE: min(next_power_of_2(batch), SMs) x vocab x 4).
# FlashInfer is only an extra of the vllm wheel up to 0.11.0 ("Requires-Dist: flashinfer-python; extra ==
# 'flashinfer'"), a requirement from 0.11.1, and its sampler opt-in (VLLM_USE_FLASHINFER_SAMPLER unset: None) through
# 0.20.0 (read in the 0.8.5-0.20.0 wheels; 0.19.0's log: "FlashInfer top-p/top-k sampling is available but disabled
# by default"); from 0.21.0 envs.py defaults it to True. So `pip install vllm` of a V1 release before 0.21.0 samples
# natively: by sort before 0.17.0, by the Triton kernel from it.
# V0 (before 0.8.0) sorts the same way (vllm/model_executor/layers/sampler.py Sampler.forward: the bf16 logits, still
# held by ModelRunner.execute_model, `logits.to(torch.float)`, then _apply_top_k_top_p's `logits.sort()` over the
# profile's 256 dummy sequences, whose SamplingParams(top_p=0.99, top_k=vocab_size - 1) turn both filters on);
# FlashInfer only with VLLM_USE_FLASHINFER_SAMPLER set (envs.py: None) and flashinfer installed. The logits are
# gathered to the driver rank under tensor parallel (logits_processor.py tensor_model_parallel_gather), which alone
# samples, and execute_model keeps the whole forward's hidden states alive meanwhile (read in the 0.6.4, 0.7.0 and
# 0.7.1 wheels). S1 and S2 (PR 10511: "PyTorch activation peak memory 1.26GiB" for Llama 3 8B at 8,192 tokens, tensor
# 1 and 2) agree: 1.23 GiB with the sort, 0.78 (the forward) without it; sets nothing. V0_SORT_SAMPLER names this note.
# That note holds from 0.6.2. Earlier V0 releases sort other tensors (sampler.py read in the 0.2.0, 0.2.1.post1,
# 0.2.4-0.2.7, 0.3.0, 0.3.1, 0.3.3, 0.4.1-0.4.3, 0.5.0-0.5.5, 0.6.0-0.6.4, 0.7.0, 0.7.3, 0.8.3 and 0.10.0 wheels):
# - before 0.2.6 (V0_INVERSE_SCATTER), _apply_top_p_top_k sorts the bf16 logits descending, builds the top-p softmax,
#   its cumsum and two bool masks, then re-sorts by `torch.gather(logits_sort, dim=-1, index=torch.argsort(logits_idx,
#   dim=-1))`: a second segmented sort, of the int64 indices, whose values (8) and indices (8) and int64 temporaries
#   (reverse index, CUB's alternate keys and values: 24) come beside the bf16 logits, the sorted values, the indices,
#   the softmax, the cumsum and the masks (2 + 2 + 8 + 2 + 2 + 2): 58 bytes a logit (V0_ARGSORT_PEAK_BYTES);
# - before 0.5.5 (V0_FP32_LOGITS) Sampler.forward has no `logits = logits.to(torch.float)`: the sort runs on the bf16
#   logits (`logits.div_` in place, softmax and log_softmax take dtype=torch.float only afterwards), so at the sort the
#   bf16 logits (2), the bf16 sorted values (2) and int64 indices (8), the reverse index (8) and CUB's alternate bf16
#   keys (2) and int64 values (8): 30 bytes a logit (V0_BF16_SORT_PEAK_BYTES), above the 28-29 at the re-sort;
# - from 0.2.6 until 0.6.2 the re-sort scatters an inverse index (`logits_idx_inv = torch.empty_like(logits_idx)
#   .scatter_(...)`, int64) and gathers through it, while the top-k mask, the softmax and its separate cumsum
#   (`probs_sum = probs_sort.cumsum(dim=-1)`) and the top-p mask are alive; from 0.6.2 `torch.empty_like(logits_sort)
#   .scatter_(dim=-1, index=logits_idx, src=logits_sort)` needs no inverse index. With the fp32 cast (0.5.5-0.6.1) the
#   gather holds the bf16 (2) and fp32 (4) logits, the sorted values (4), the indices (8), the top-k mask (1), the
#   softmax (4), the cumsum (4), the top-p mask (1), the inverse index (8) and the gathered logits (4): 40 bytes a logit
#   (V0_GATHER_PEAK_BYTES), over the sort's 38.
# The profile's batch is the same in each: max_num_seqs dummy sequences, one sampled logit row each (model_runner.py
# profile_run, SamplingParams(top_p=0.99, top_k=vocab_size - 1)), with no penalties, logprobs or min-p. V0 samples
# through FlashInfer only from 0.5.5 (V0_FLASHINFER_SAMPLER: the 0.5.4 and older sampler.py import no flashinfer).
V0_INVERSE_SCATTER = ((0, 2, 6), (0, 6, 2))
V0_FP32_LOGITS = (0, 5, 5)
V0_FLASHINFER_SAMPLER = V0_FP32_LOGITS
V0_ARGSORT_PEAK_BYTES = 2 + 2 + 8 + 2 + 2 + 2 + 8 + 8 + 3 * 8
V0_BF16_SORT_PEAK_BYTES = 2 + 2 + 8 + 8 + 2 + 8
V0_GATHER_PEAK_BYTES = 2 + 4 + 4 + 8 + 1 + 4 + 4 + 1 + 8 + 4
# sampler_path's V0 paths before 0.6.2, and each one's bytes a logit (the "sort" path: NATIVE_SORT_PEAK_BYTES)
V0_SORT_PATHS = {"v0-argsort": V0_ARGSORT_PEAK_BYTES, "v0-bf16-sort": V0_BF16_SORT_PEAK_BYTES,
                 "v0-gather": V0_GATHER_PEAK_BYTES}
FLASHINFER_SAMPLER_BYTES = 14
NATIVE_SAMPLER_BYTES = 28
NATIVE_SORT_TEMP_BYTES = 8 + 4 + 8
NATIVE_SORT_PEAK_BYTES = 2 + 4 + 4 + 8 + NATIVE_SORT_TEMP_BYTES
TRITON_SAMPLER_BYTES = 14
TRITON_SAMPLER_FROM = (0, 17)
TRITON_SAMPLER_MIN_BATCH = 8
# From 0.30.0 apply_top_k_top_p takes the Triton kernel at any batch where Triton is (`if HAS_TRITON:`; read in 0.29.0,
# `HAS_TRITON and logits.shape[0] >= 8`, and 0.30.0-0.34.0), for either runner.
TRITON_SAMPLER_ANY_BATCH = (0, 30)
FLASHINFER_SAMPLER_DEFAULT = (0, 21)
# Streaming multiprocessors (num_compute_units: the Triton sampler's buffer rows): the catalog's GPU.sm_count; GPUs
# it does not list take an H100's, as ASSUMED_TOTAL does.
ASSUMED_SMS = 132
# What the profile run holds while the sampler runs (vllm/v1/worker/gpu_model_runner.py profile_run): from 0.9.2
# _dummy_run returns the whole forward's hidden states beside the sampled rows (`return hidden_states,
# hidden_states[logit_indices]`) and profile_run keeps both until `del hidden_states, output` (read in 0.9.2, 0.19.0
# and, in the v2 runner, 0.34.0; 0.8.5-0.9.1 return only the sampled rows); from 0.9.0 _dummy_sampler_run adds its
# torch.rand_like copy of those rows (read in 0.9.0, 0.9.1, 0.9.2 and 0.19.0; not in 0.8.5).
FULL_HIDDEN_HELD = (0, 9, 2)
SAMPLER_RANDOM_ROWS = (0, 9)
# What changes for the memory under the new GPU model runner (vllm_runner.V2_RUNNER, 0.34.0):
# - its _dummy_sampler_run computes the logits and samples them twice (a default pass on the bf16 logits, then one with
#   SamplingParams.for_sampler_warmup: the fp32 copy of apply_sampling_params, penalties, bias, min-p and temperature
#   in place, FlashInfer's top_k_top_p_sampling_from_logits, Triton log-probs), so its peak is FlashInfer's 14 bytes a
#   logit as before, but it makes no torch.rand_like copy of the sampled rows (SAMPLER_RANDOM_ROWS ends);
# - its Sampler, built in load_model on the last pipeline stage after "Model loading took", keeps per-request state for
#   max_num_seqs requests for the engine's life (sample/penalties.py PenaltiesState: output_bin_counts, int32 over the
#   whole vocabulary, "can be very large, taking up GBs of GPU memory", and prompt_bin_mask, one bit a token in int32
#   words; structured_outputs.py StructuredOutputsWorker.grammar_bitmask, one bit a token): memory_profiling's
#   total_consumed counts it against the KV cache (sampler_state_bytes); 0.49 GiB for Llama 3's 128,256-token vocabulary
#   at 1,024 sequences;
# - without FlashInfer (flashinferSampler: false) it masks through apply_top_k_top_p_triton at every batch size
#   (topk_topp_sampler.py apply_top_k_top_p: Triton whenever HAS_TRITON) and draws in gumbel.py's Triton kernel, which
#   allocates nothing the size of the logits: the bf16 logits and the fp32 copy, 6 bytes a logit
#   (V2_NATIVE_SAMPLER_BYTES), plus the Triton kernel's buffer rows (path "gumbel").
V2_NATIVE_SAMPLER_BYTES = 2 + 4
# What the new runner's profile samples (v1/worker/gpu/model_runner.py _dummy_sampler_run): through 0.32.x once, over
# InputBatch.make_dummy's requests, which no add_request has given sampling parameters (sample/states.py: temperature
# 0, top_k the vocabulary, top_p 1.0), so _requires_logits_processing is false, no fp32 copy is made and gumbel_sample
# reads the bf16 logits (its per-block argmax and max, vocab / 1024 a row, are left out): the logits alone, 2 bytes a
# logit (path "logits"; "the sampler may skip top_k, top_p, and logprobs"). From 0.33.0 (V2_SAMPLER_WARMUP_PASS) a
# second pass with SamplingParams.for_sampler_warmup, as 0.34.0 (above). In every release the runner's warmup_kernels
# (v1/worker/gpu/warmup.py, from compile_or_warm_up_model once the cache is allocated; enable_jit_warmup defaults to
# True) runs min(max_num_seqs, max_num_batched_tokens // WARMUP_PROMPT_TOKENS) requests of decode_query_len + 1 tokens
# with for_sampler_warmup's parameters: that sampler, not the profile's, is what the start-up must fit after the cache.
V2_SAMPLER_WARMUP_PASS = (0, 33)
WARMUP_PROMPT_TOKENS = 2
# gpu_worker.py compile_or_warm_up_model runs the new runner's warmup_kernels in place of the old runner's sampler
# warm-up, after capture_model through 0.29.x and before it from 0.30.0 (read in 0.22.0 and 0.27.0-0.33.0); 0.34.0
# warms the sampler up after capture again, for every model. Before capture the graph pool, which the KV cache's
# budget already set aside (engines.GRAPHS_IN_BUDGET), is not taken yet.
V2_WARMUP_BEFORE_CAPTURE = ((0, 30), V2_RUNNER)


def sampler_peak_bytes(a: ModelArch, layout: Layout, requests: int, path: str = "flashinfer",
                       gpu: GPU | None = None) -> int:
    """The profile run's sampler: logits of each request's last token (bf16, gathered over tensor
    parallel) and what top-k/top-p sampling keeps beside them (vllm/v1/sample/sampler.py,
    ops/topk_topp_sampler.py), by `path` (sampler_path): FlashInfer's with the bf16 shard still alive at its peak,
    PyTorch's native sort, whose peak (inside the segmented CUB sort) comes after the shard is freed, or the Triton
    kernel's in-place masking and its buffer of min(next_power_of_2(requests), SMs) fp32 rows, with the old runner's
    softmax and exponential draws ("triton") or the new runner's Gumbel kernel ("gumbel"). Only the last pipeline
    stage samples."""
    if path == "sort":
        # the sort's own buffers (SortStable.cu segmented_sort_pairs, CUB's temporary storage) over the scatter's peak
        return requests * a.vocab_size * max(NATIVE_SAMPLER_BYTES, NATIVE_SORT_PEAK_BYTES)
    if path in V0_SORT_PATHS:  # V0 before 0.6.2 (V0_SORT_PATHS): the gathered bf16 logits, their shard freed
        return requests * a.vocab_size * V0_SORT_PATHS[path]
    if path == "logits":  # the new runner's dummy pass before V2_SAMPLER_WARMUP_PASS: the gathered bf16 logits alone
        shard = a.vocab_size // layout.tensor if layout.tensor > 1 else 0
        return requests * (a.vocab_size + shard) * ACT_BYTES
    if path in ("triton", "gumbel"):
        sms = (gpu.sm_count if gpu else None) or ASSUMED_SMS
        rows = min(1 << max(0, requests - 1).bit_length(), sms)
        per_logit = TRITON_SAMPLER_BYTES if path == "triton" else V2_NATIVE_SAMPLER_BYTES
        return requests * a.vocab_size * per_logit + rows * a.vocab_size * 4
    shard = a.vocab_size // layout.tensor if layout.tensor > 1 else 0
    return requests * (a.vocab_size * FLASHINFER_SAMPLER_BYTES + shard * 2)


def sampler_path(inf: Inference, requests: int = TRITON_SAMPLER_MIN_BATCH, a: ModelArch | None = None,
                 warmup: bool = False) -> str:
    """How vLLM samples top-k/top-p: through FlashInfer as the spec says (`flashinferSampler`), else by the
    release's default (FLASHINFER_SAMPLER_DEFAULT); natively by sort before TRITON_SAMPLER_FROM or below
    TRITON_SAMPLER_MIN_BATCH requests (apply_top_k_top_p), by the Triton kernel from it, and from V2_RUNNER by the
    Triton kernel and Gumbel draws at any batch ("gumbel"), as the new runner does wherever it runs `a` (v2_runner);
    its profile before V2_SAMPLER_WARMUP_PASS samples the bare logits ("logits"), its warm-up (`warmup`) with
    for_sampler_warmup's parameters. V0 sorts too (V0_SORT_SAMPLER), before 0.6.2 as its release does (v0_sort_path).
    Other engines take FlashInfer's count."""
    if inf.engine != "vllm":
        return "flashinfer"
    flashinfer = (inf.flashinfer_sampler if inf.flashinfer_sampler is not None
                  else not inf.vllm_before(FLASHINFER_SAMPLER_DEFAULT))
    if inf.vllm_v0:
        return "flashinfer" if flashinfer and not inf.vllm_before(V0_FLASHINFER_SAMPLER) else v0_sort_path(inf)
    v2 = v2_runner(inf, a) or not inf.vllm_before(V2_RUNNER)
    if v2 and not warmup and inf.vllm_before(V2_SAMPLER_WARMUP_PASS):
        return "logits"
    if flashinfer:
        return "flashinfer"
    few = requests < TRITON_SAMPLER_MIN_BATCH and inf.vllm_before(TRITON_SAMPLER_ANY_BATCH)
    if v2:
        return "sort" if few else "gumbel"
    return "sort" if inf.vllm_before(TRITON_SAMPLER_FROM) or few else "triton"


def v0_sort_path(inf: Inference) -> str:
    """V0's native top-k/top-p sampler by release: the int64 argsort re-sort before V0_INVERSE_SCATTER ("v0-argsort"),
    the sort of bf16 logits before V0_FP32_LOGITS ("v0-bf16-sort"), the fp32 logits' gather through an inverse index
    until 0.6.2 ("v0-gather"), then the fp32 sort of V0_SORT_SAMPLER ("sort"). A release left unnamed is current."""
    scatter_from, scatter_until = V0_INVERSE_SCATTER
    if inf.vllm_before(scatter_from):
        return "v0-argsort"
    if inf.vllm_before(V0_FP32_LOGITS):
        return "v0-bf16-sort"
    return "v0-gather" if inf.vllm_before(scatter_until) else "sort"


def profile_held_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings, requests: int,
                       gpu: GPU | None = None, workspace: int | None = None) -> int:
    """What vLLM V1's profile run holds beside the sampler's own tensors on the last pipeline stage: the dummy
    forward's sampled rows, all its hidden states from FULL_HIDDEN_HELD, and _dummy_sampler_run's random copy of the
    sampled rows from SAMPLER_RANDOM_ROWS; the fused-MoE workspace (MOE_WORKSPACE_HELD); on a stage after the first, the
    IntermediateTensors buffer it receives into (gpu_model_runner.py _dummy_run: make_empty_intermediate_tensors of
    max_num_tokens, hidden states and residual: pipeline_buffer_bytes). V0 holds the whole forward's hidden states
    (V0_SORT_SAMPLER); other engines the sampled rows. `workspace`: held_moe_workspace_bytes of max_num_batched_tokens,
    where the caller has it."""
    rows = requests * a.hidden_size * ACT_BYTES
    if inf.engine != "vllm":
        return rows
    if inf.vllm_v0:
        return s.max_num_batched_tokens * a.hidden_size * ACT_BYTES
    tokens = s.max_num_batched_tokens
    random_rows = not inf.vllm_before(SAMPLER_RANDOM_ROWS) and not v2_runner(inf, a) and inf.vllm_before(V2_RUNNER)
    held = rows + (rows if random_rows else 0)
    held += 0 if inf.vllm_before(FULL_HIDDEN_HELD) else tokens * a.hidden_size * ACT_BYTES
    if moe_workspace_held(inf, a, layout, gpu):
        held += held_moe_workspace_bytes(inf, a, layout, tokens) if workspace is None else workspace
    return held + pipeline_buffer_bytes(inf, a, layout, s)


# vLLM 0.27.0 sizes the cache by the free memory lost since init_device's snapshot (utils/mem_utils.py
# memory_profiling: non_kv_cache_memory = total_consumed + torch_peak - torch_allocated after the profile). Through
# 0.26.x the sum was weights_memory (load_model's allocated bytes, "Model loading took"), the profile's torch peak above
# what was allocated before it, and the non-torch growth (gpu_worker.py determine_available_memory; read in 0.22.0,
# 0.24.0 and 0.26.0): a torch tensor made after the snapshot, outside the weights' measurement and before the profile
# is in none of the three. The new runner's sampler state is one (Sampler built in GPUModelRunner.__init__ in 0.22.0,
# after "Model loading took" in load_model in 0.24.0-0.28.0; init_device takes init_snapshot before it makes the
# runner): before 0.27.0 the cache's budget leaves it out and it is held in the 1 - util share beside the cache.
TOTAL_CONSUMED = (0, 27)


def sampler_state_bytes(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """The new runner's per-request sampler state (V2_RUNNER, and wherever v2_runner picks it before), held on every
    rank of the last pipeline stage from load to exit: output_bin_counts (max_num_seqs x vocab int32), prompt_bin_mask
    and the grammar bitmask (max_num_seqs x ceil(vocab / 32) int32 each; sample/penalties.py and structured_outputs.py
    from 0.22.0, built after the baseline snapshot). Older runners and other engines: none counted."""
    if inf.engine != "vllm" or (inf.vllm_before(V2_RUNNER) and not v2_runner(inf, a)):
        return 0
    return s.max_num_seqs * (a.vocab_size + 2 * -(-a.vocab_size // 32)) * 4


def unbudgeted_state_bytes(inf: Inference, a: ModelArch, s: EngineSettings) -> int:
    """The part of sampler_state_bytes the KV cache's budget does not count: all of it before TOTAL_CONSUMED (held
    outside the budget, beside the cache), none from it."""
    return sampler_state_bytes(inf, a, s) if inf.vllm_before(TOTAL_CONSUMED) else 0


def sampler_warmup_bytes(inf: Inference, a: ModelArch, layout: Layout, s: EngineSettings, profiled: int,
                         gpu: GPU | None = None) -> int:
    """What the sampler's warm-up allocates once the KV cache is: the profile's sampler run again (`profiled`), except
    under the new runner before V2_SAMPLER_WARMUP_PASS, whose profile sampled bare logits but whose warmup_kernels
    samples min(max_num_seqs, max_num_batched_tokens // WARMUP_PROMPT_TOKENS) requests with for_sampler_warmup's
    parameters, beside what the profile held."""
    if not v2_runner(inf, a) or not inf.vllm_before(V2_SAMPLER_WARMUP_PASS):
        return profiled
    requests = max(1, min(s.max_num_seqs, s.max_num_batched_tokens // WARMUP_PROMPT_TOKENS))
    path = sampler_path(inf, requests, a, warmup=True)
    held = profile_held_bytes(inf, a, layout, s, min(s.max_num_batched_tokens, s.max_num_seqs), gpu)
    return sampler_peak_bytes(a, layout, requests, path, gpu) + held


def warmup_before_capture(inf: Inference, a: ModelArch) -> bool:
    """The sampler's warm-up runs before CUDA graph capture (V2_WARMUP_BEFORE_CAPTURE, under the new runner)."""
    first, until = V2_WARMUP_BEFORE_CAPTURE
    return v2_runner(inf, a) and not inf.vllm_before(first) and inf.vllm_before(until)
