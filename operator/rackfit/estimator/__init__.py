"""The memory estimator: `estimate(spec, layout)` -> bytes per GPU at the peak, itemised.

Pure: no I/O. The phases whose peaks compete are modelled separately (a training step peaks either
at the loss backward, with every activation kept, or at the optimizer step, with every gradient),
and the breakdown reports what is live at the larger one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rackfit.catalog.types import GPU
from rackfit.errors import InvalidWorkload
from rackfit.estimator import float8
from rackfit.estimator.accumulation import accumulation_notes, transformers_accumulated_grads
from rackfit.estimator.activations import (
    TrainingActivations,
    freed_16bit_logits_bytes,
    inference_activation_bytes,
    pure_fp32_activations,
    training_activations,
)
from rackfit.estimator.comms import training_nccl_bytes
from rackfit.estimator.context import CUDA_CONTEXT_BYTES, cuda_context_bytes
from rackfit.estimator.engine_defaults import cuda_total_bytes, v0_under_pipeline
from rackfit.estimator.engines import serve
from rackfit.estimator.errorband import error_band
from rackfit.estimator.frameworks import RuntimePeak, runtime_notes, runtime_peak
from rackfit.estimator.fsdp import fsdp1_reserved_union
from rackfit.estimator.hf_fsdp2 import whole_quantized_load
from rackfit.estimator.kvcache import kv_cache_bytes
from rackfit.estimator.megatron_buffers import torch_workspace_bytes_outside_megatron
from rackfit.estimator.mm_profile import encoder_profiled, v0_mm_profiled
from rackfit.estimator.offload import offload_notes, offloads
from rackfit.estimator.params import ParamCounts, count_params
from rackfit.estimator.peft import (
    bnb_backward_dequant_bytes,
    kbit_fp32_head_cast_bytes,
    kbit_fp32_vocab_bytes,
    kbit_vocab_recast_bytes,
    unfit_step_temporaries,
)
from rackfit.estimator.pre_ampere import COMPUTE_CAPABILITY, bf16_cast, pre_ampere_refusal, v0_fallback
from rackfit.estimator.result import Breakdown, Estimate, Layout
from rackfit.estimator.torchtune import unadapted_16bit_bytes
from rackfit.estimator.training import (
    ModelStates,
    ddp_param_grads,
    ddp_wrap_copies,
    ddp_wrap_holds_copies,
    kbit_fp32_residual,
    largest_parameter,
    lora_element_bytes,
    model_states,
    step_temporary_bytes,
)
from rackfit.estimator.v1_oracle import v1_unsupported
from rackfit.estimator.weights import mxfp4_dequantize_note, quantization_of, weight_bytes
from rackfit.models import ModelArch, resolve
from rackfit.spec import Inference, LLMWorkloadSpec, Training

__all__ = ["CUDA_CONTEXT_BYTES", "estimate", "estimate_arch", "trainer_allocated_peak", "training_peak",
           "training_states", "refusal",
           "check_context", "fp8_unsupported", "pre_ampere_refusal", "bf16_cast", "vllm_weights",
           "vllm_weights_overflow", "Estimate", "Breakdown", "Layout"]

# NCCL communicators and buffers once more than one GPU talks (not measured here; NCCL's defaults
# of 4 MiB per channel and peer, a few hundred MiB on an 8-GPU node). Inference without a serving
# engine only: training counts its communicators (comms.training_nccl_bytes).
NCCL_BYTES = 512 << 20
# The caching allocator holds freed blocks it cannot reuse for differently sized requests. Measured
# slack, as a share of the memory allocated and freed during the step: per row of
# bench/cases/h200/h200-memory-calibration.jsonl, (max_reserved_bytes - allocated peak) / the bytes the
# share applies to, median over the rows named (bench/calibrate.py re-derives each):
SLACK_PREFILL = 0.20          # KV cache and activations of a prefill
                              # rows: all 11 `prefill` rows (median 0.203)
SLACK_TRAINING = 0.07         # activations freed layer by layer in the backward
                              # rows: the 5 `train` rows without checkpointing; their median is 0.057, so
                              # 0.07 is not re-derived: it is the median (0.069) of the 4 besides full_mixed_adamw
SLACK_RECOMPUTE = 0.28        # recomputed layers interleave allocations with the backward's frees
                              # rows: checkpointed lora_r16 (Llama-3.2-1B b4, Llama-3.1-8B b4, Qwen2.5-7B b4) and
                              # full_* peaking at the optimizer step (Llama-3.1-8B b1 both modes): median 0.280
SLACK_STATE_SPLIT = 0.15      # a full fine-tune's first step allocates optimizer states into the freed
                              # activation blocks, splitting them (loss-phase peaks only; none where the
                              # optimizer keeps no state: SGD without momentum)
                              # rows: checkpointed full_* Llama-3.2-1B b4 (both modes), Llama-3.2-3B
                              # full_mixed b2 and full_bf16 b8: median share 0.431, less SLACK_RECOMPUTE


def estimate(spec: LLMWorkloadSpec, layout: Layout | None = None, hf_config: dict[str, Any] | None = None,
             gpu: GPU | None = None, gpu_architecture: str | None = None) -> Estimate:
    """Per-GPU memory of `spec` on `layout` (default: the spec's parallelism, else one GPU). With `gpu`,
    a serving engine's KV cache is sized as the engine sizes it there (kvCacheTokens, maxConcurrency).
    `gpu_architecture`: where only the GPU's architecture is known (the training bench's cases), what depends on it
    alone, the training's cuBLAS workspaces (megatron_buffers); `gpu`'s own architecture wins."""
    if layout is None:
        layout = spec.parallelism or Layout()
    return estimate_arch(spec, resolve(spec.model, hf_config), layout, gpu, gpu_architecture=gpu_architecture)


def _weights(spec: LLMWorkloadSpec, arch: ModelArch, p: ParamCounts, layout: Layout, gpu: GPU | None) -> int:
    """The weights as `spec`'s runtime holds them on this GPU (weights.weight_bytes)."""
    training = spec.workload == "training"
    runtime = spec.training.framework if training else spec.inference.engine
    stored = weight_bytes(p, spec.precision, layout, arch.num_layers, arch, runtime,
                          gpu.architecture if gpu is not None else None, None if training else spec.inference, training)
    if not training:
        return stored
    # torchtune before 0.3 keeps QLoRA's unadapted projections 16-bit (torchtune.unadapted_16bit_bytes)
    return stored + unadapted_16bit_bytes(arch, spec.training, layout,
                                          quantization_of(arch, spec.precision, arch.num_layers, runtime))


def _training_inputs(spec: LLMWorkloadSpec, layout: Layout | None) -> tuple[Layout, ModelArch, ParamCounts, int]:
    """`layout` (else `estimate`'s), the model, its parameter counts and the weights `estimate` counts: what the
    bench's readers below share."""
    layout = layout or spec.parallelism or Layout()
    arch = resolve(spec.model)
    p = _run_params(spec, arch)
    return layout, arch, p, _weights(spec, arch, p, layout, None)


def _run_params(spec: LLMWorkloadSpec, arch: ModelArch) -> ParamCounts:
    """The parameters the job loads: without an untied lm_head where the training runs the bare decoder
    (training.lmHead false: transformers' AutoModel builds no lm_head)."""
    p = count_params(arch)
    if spec.workload == "training" and spec.training.lm_head is False and p.lm_head:
        return replace(p, lm_head=0)
    return p


def training_peak(spec: LLMWorkloadSpec, layout: Layout | None = None, stage: str = "max",
                  gpu_architecture: str | None = None) -> RuntimePeak:
    """frameworks.runtime_peak of a fsdp, deepspeed or megatron training spec at `layout` (as `estimate`'s), over the
    weights `estimate` counts, on a GPU of `gpu_architecture` (as `estimate`'s): the step's phases, the states kept
    between steps, the wrap (read by bench and tests)."""
    layout, arch, p, weights = _training_inputs(spec, layout)
    return runtime_peak(arch, p, spec.training, spec.precision, layout, weights, stage, gpu_architecture)


def training_states(spec: LLMWorkloadSpec, layout: Layout | None = None) -> ModelStates:
    """training.model_states of a transformers training spec at `layout` (as `estimate`'s), over the weights
    `estimate` counts (with the fp32 embeddings, head and norms peft's prepare leaves on a bitsandbytes base,
    estimator/peft.py kbit_fp32_vocab_bytes, as _trainer_step counts them)."""
    layout, arch, p, weights = _training_inputs(spec, layout)
    weights += kbit_fp32_vocab_bytes(p, spec.training, spec.precision)
    return model_states(arch, p, spec.training, spec.precision, layout, weights)


def trainer_allocated_peak(spec: LLMWorkloadSpec, layout: Layout | None = None) -> int:
    """framework transformers: the largest allocation of the Trainer's step (torch's max_memory_allocated), the
    weights and optimizer states plus the most the backward's peak, its end or the optimizer step holds beside them.
    The estimate reports the moment that reserves the most (_training), which is not this one where the step's
    foreach temporaries take new segments (_unfit_step): the step then reserves more while the loss's backward
    allocated more."""
    layout, arch, p, weights = _training_inputs(spec, layout)
    s = _trainer_step(spec, arch, p, layout, weights)
    return s.states.weights + s.states.optimizer + max(s.backward_peak, s.backward_end, s.step_peak)


def estimate_arch(spec: LLMWorkloadSpec, arch: ModelArch, layout: Layout, gpu: GPU | None = None,
                  weights: int | None = None, gpu_architecture: str | None = None) -> Estimate:
    """As `estimate`, for an already resolved architecture (the planner resolves once per spec). `weights`: what
    vllm_weights gives for these arguments, where the caller has it (the planner's vllm_weights_overflow)."""
    check_context(spec, arch)
    if refused := pre_ampere_refusal(spec, arch, gpu):
        raise InvalidWorkload([refused])
    # V1 falls back to V0 below compute capability 8.0 (pre_ampere.v0_fallback): the V0 engine is what serves, and
    # rackfit's V0 model is keyed by release, so the spec is estimated as if it said VLLM_USE_V1=0
    fallback = v0_fallback(spec, gpu)
    # and for what the release's V1 does not take yet (v1_oracle.v1_unsupported: bitsandbytes, LoRA, speculative
    # decoding, an fp8 KV cache off Hopper, fp32 in 0.8.x-0.9.x), the same way
    unsupported = None if fallback else v1_unsupported(spec, arch, gpu)
    if fallback or unsupported:
        spec = spec.model_copy(update={"inference": spec.inference.model_copy(update={"vllm_use_v1": False})})
    p = _run_params(spec, arch)
    runtime = spec.inference.engine if spec.workload == "inference" else spec.training.framework
    gpu_arch, training = (gpu.architecture if gpu is not None else None), spec.workload == "training"
    # the training's cuBLAS workspaces: the GPU's architecture, else the one given alone, else none (Hopper's sizes)
    workspace_arch = gpu_arch or gpu_architecture
    inference = None if training else spec.inference
    weights = _weights(spec, arch, p, layout, gpu) if weights is None else weights
    comm = (training_nccl_bytes(spec.training, layout, gpu, arch.is_moe) if training  # per communicator: comms.py
            else NCCL_BYTES if layout.total_gpus > 1 else 0)
    dequantize = mxfp4_dequantize_note(runtime, gpu_arch, layout, training)
    q = quantization_of(arch, spec.precision, arch.num_layers, runtime, dequantize, inference)
    notes = [q.note(spec.precision)] if arch.quantization is not None else []
    if dequantize and q.method == "mxfp4" and arch.quantization is None:
        notes.append(dequantize)
    if arch.rough:
        notes.append("only a parameter count was given: weights are exact, KV cache and activations are rough "
                     "(a Llama-shaped stand-in); give a preset or architecture for a real estimate")
    if arch.vision_parameters:
        profiled = inference is not None and encoder_profiled(inference, arch)
        v0 = inference is not None and v0_mm_profiled(inference, arch)
        notes.append(f"vision tower: {arch.vision_parameters / 1e9:.2f}B parameters counted as 16-bit weights; "
                     + ("vLLM's profile of its images (encoder peak and cache) is counted" if profiled else
                        "vLLM V0's profile of its images (one a dummy sequence) is counted where one image fits "
                        "max_num_batched_tokens, and from 0.8.3 where it does not (one longer sequence with the image "
                        "and, for Qwen2-VL's family, a one-frame video)" if v0 else
                        "the images' activations are not counted"))
    if gpu is not None and gpu.architecture == "ampere" and _fp8_weights(spec, arch):
        notes.append(fp8_unsupported(spec, arch, gpu) or
                     "fp8 weights on Ampere run weight-only (FP8 Marlin kernels, upcast to 16-bit per matmul)")
    if bf16_cast(spec, gpu):
        notes.append(f"vLLM runs the bf16 model as fp16 on {gpu.model} ({gpu.architecture}, compute capability "
                     f"{COMPUTE_CAPABILITY[gpu.architecture]}: no bf16); both are 2 bytes, the estimate is the same")
    if fallback:
        notes.append(f"vLLM {spec.inference.engine_version} runs its V0 engine on {gpu.model} (V1 needs compute "
                     "capability 8.0 before 0.10.2); estimated as V0, as with VLLM_USE_V1=0")
    if unsupported:
        notes.append(f"vLLM {spec.inference.engine_version} runs its V0 engine for {unsupported} (not taken by its V1 "
                     "engine yet: \"Falling back to V0\"); estimated as V0, as with VLLM_USE_V1=0")
    if spec.workload == "inference" and v0_under_pipeline(spec.inference, layout.pipeline):
        notes.append(f"vLLM {spec.inference.engine_version} runs its V0 engine under pipeline parallel unless started "
                     "with --distributed-executor-backend ray (V1 admits mp from 0.9.0); estimated as V1, which "
                     "rackfit models for this release, with V0's start-up check of one request against one "
                     "virtual engine's share of the KV cache (the cache split in pipeline-parallel-size parts)")
    if spec.workload == "inference" and spec.inference.serving_engine:
        return _served(spec, arch, p, layout, weights, gpu, notes)
    if spec.workload == "inference":
        parts, phase = _inference(spec, arch, layout, weights)
    else:
        parts, phase, host = _training(spec, arch, p, layout, weights, workspace_arch)
        if phase == "load":
            notes.append(_load_note(spec.training, spec.precision, p, layout))
        if spec.training.paged_optimizer:
            notes.append("bitsandbytes' paged optimizer states (training.pagedOptimizer) are CUDA managed memory "
                         "the driver pages to the host as the GPU fills; not counted on the GPU")
        elif spec.training.optimizer == "adamw8bit":
            notes.append("paged 8-bit optimizers can move states to host memory under pressure; counted on the GPU")
        notes.extend(runtime_notes(spec.training, layout, spec.precision))
        notes.extend(float8.notes(spec.training))
        notes.extend(accumulation_notes(spec.training, layout))
        if offloads(spec.training) and spec.training.framework != "transformers":
            notes.extend(offload_notes(spec.training, host, layout.total_gpus,
                                       gpu.host_memory_gb if gpu is not None else 0))
    # Loaders that tie embeddings materialise the output projection first and free it: the allocator
    # keeps that block, which later allocations reuse, so it counts only when the slack is smaller.
    load_slack = p.embedding * 2 // layout.tensor if arch.tie_word_embeddings else 0
    overhead = cuda_context_bytes(gpu) + comm + max(load_slack, parts.pop("slack"))
    if training:
        # torch's cuBLAS workspaces, the forward's thread and autograd's, in memory_allocated from the first backward
        # on (megatron_buffers.torch_workspace_bytes, by the GPU's architecture; Megatron counts them among its
        # buffers, frameworks.runtime_peak)
        overhead += torch_workspace_bytes_outside_megatron(spec.training, workspace_arch)
    breakdown = Breakdown(overhead_bytes=overhead, **parts)
    return Estimate(total_bytes=breakdown.total, breakdown=breakdown, layout=layout, parameters=p.total,
                    active_parameters=p.active, peak_phase=phase, notes=notes, error_band=error_band(spec, gpu))


def _served(spec: LLMWorkloadSpec, arch: ModelArch, p: ParamCounts, layout: Layout, weights: int, gpu: GPU | None,
            notes: list[str]) -> Estimate:
    """A serving engine: the cache `concurrency` requests need, beside what the engine would allocate."""
    inf = spec.inference
    context = cuda_context_bytes(gpu)
    weights_16bit = 0
    if gpu is not None and inf.online_quantization:
        weights_16bit = weight_bytes(p, "bf16", layout, arch.num_layers, arch, inf.engine, gpu.architecture, inf,
                                     False)
    s = serve(inf, arch, layout, weights, context, gpu, spec.precision, weights_16bit)
    breakdown = Breakdown(weights_bytes=s.weights, kv_cache_bytes=s.kv_needed, activations_bytes=s.activations,
                          cuda_graph_bytes=s.cuda_graphs, non_torch_bytes=s.non_torch, overhead_bytes=context)
    if gpu is None:
        notes.append("no GPU given: the KV cache shown is what `concurrency` requests need; give an instance "
                     "type to see what the engine allocates (kvCacheTokens, maxConcurrency)")
    if s.refused:  # the engine would not start on this layout, whatever its cache holds
        notes.append(s.refused)
    elif gpu is not None and s.max_concurrency < 1:
        largest = s.kv_tokens if s.largest_context is None else s.largest_context
        notes.append(refusal(inf.engine, inf.context_length, s.kv_tokens, largest, _served_maximum(inf, arch),
                             s.starts))
    return Estimate(total_bytes=breakdown.total, breakdown=breakdown, layout=layout, parameters=p.total,
                    active_parameters=p.active, peak_phase="serving", notes=notes, engine=s.settings,
                    error_band=error_band(spec, gpu),
                    engine_budget_bytes=s.budget, kv_cache_tokens=s.kv_tokens, kv_cache_pool_bytes=s.kv_pool,
                    max_concurrency=s.max_concurrency,
                    refused=s.refused, engine_starts=s.starts)


def vllm_weights(spec: LLMWorkloadSpec, arch: ModelArch, layout: Layout, gpu: GPU) -> int | None:
    """A vLLM spec's weights at `layout` on `gpu` as `estimate_arch` counts them (weights.weight_bytes), before what
    the engine loads beside them; None for other runtimes."""
    if spec.workload != "inference" or spec.inference.engine != "vllm":
        return None
    return _weights(spec, arch, count_params(arch), layout, gpu)


def vllm_weights_overflow(weights: int, gpu: GPU) -> bool:
    """Whether a vLLM spec's `weights` (vllm_weights) alone fill `gpu`, so that `estimate_arch` gives no request a
    place (a kv_pool of 0, max_concurrency 0): the planner skips such layouts unestimated. Sound because
    engines.serve's KV pool is at most gpuMemoryUtilization (at most 1) x cuda_total_bytes less these weights (the
    engine adds adapters and drafters to them, and subtracts activations, graphs and buffers, none negative)."""
    return weights >= cuda_total_bytes(gpu)


def fp8_unsupported(spec: LLMWorkloadSpec, arch: ModelArch, gpu: GPU) -> str | None:
    """Why fp8 weights cannot run on this GPU for this runtime, or None. Below compute capability 8.9 (Ampere) only
    vLLM and SGLang run them, weight-only through FP8 Marlin kernels (vllm/model_executor/layers/quantization/fp8.py,
    `use_marlin = not current_platform.has_device_capability(89)`; SGLang's fp8.py the same); TensorRT-LLM's fp8
    kernels and transformers' (FbgemmFp8, FineGrainedFP8) need 8.9."""
    if gpu.architecture != "ampere" or not _fp8_weights(spec, arch):
        return None
    if spec.workload == "inference" and spec.inference.engine in ("vllm", "sglang"):
        return None
    runtime = spec.inference.engine if spec.workload == "inference" else spec.training.framework
    return (f"fp8 weights on {gpu.model} ({gpu.architecture}) run only weight-only in vLLM and SGLang (Marlin "
            f"kernels); {runtime} needs compute capability 8.9 (Ada, Hopper) for fp8")


def _fp8_weights(spec: LLMWorkloadSpec, arch: ModelArch) -> bool:
    q = arch.quantization
    return q.method in ("fp8", "fbgemm_fp8") if q is not None else spec.precision == "fp8"


# SGLang serves a context_length above the one it derives, with a warning, before 0.5.1: configs/model_config.py
# ModelConfig.__init__ reads SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN with default "True" (0.4.4.post2 to 0.5.0rc2;
# 0.3.0 takes context_length unchecked); 0.5.1 reads it with get_bool_env_var's default "false" (sglang PR 9388) and
# raises "User-specified context_length ... is greater than the derived context_length".
SGLANG_REFUSES_LONGER_CONTEXT = (0, 5, 1)


def model_maximum(inf: Inference, arch: ModelArch) -> int:
    """The longest context `inf.engine` derives for this model (0: unknown): SGLang's get_context_length
    (ModelArch.sglang_max_context) for sglang, the PyTorch backend's infer_max_seq_len (ModelArch.trtllm_max_context)
    for tensorrt-llm, vLLM's _get_and_verify_max_len (max_position_embeddings) for the others. trtllm-build's own
    deduction (builder.py _init_max_seq_len: x factor unless su, longrope or llama3, so yarn too) is no limit
    (_served_maximum), and is not derived."""
    if inf.engine == "sglang" and arch.sglang_max_context:
        return arch.sglang_max_context
    if inf.engine == "tensorrt-llm" and not inf.trt_engine and arch.trtllm_max_context:
        return arch.trtllm_max_context
    return arch.max_position_embeddings


def _served_maximum(inf: Inference, arch: ModelArch) -> int:
    """The longest context the engine serves (0: unknown): the model's maximum as it derives it, or, where it serves
    a longer one with a warning, contextLength when above it: SGLang before 0.5.1, and TensorRT-LLM's TRT engine, which
    trtllm-build builds at a longer max_seq_len with "max_seq_len ... is larger than max_position_embeddings ... *
    rotary scaling ..., the model accuracy might be affected" (builder.py _init_max_seq_len, read in the code index;
    the earlier commands/build.py main, of args.max_seq_len and weight_streaming, warned alike)."""
    longest = model_maximum(inf, arch)
    if not longest or not (inf.sglang_before(SGLANG_REFUSES_LONGER_CONTEXT) or inf.trt_engine):
        return longest
    return max(longest, inf.context_length)


def check_context(spec: LLMWorkloadSpec, arch: ModelArch) -> None:
    """An inference contextLength beyond the model's maximum, as the engine derives it, is refused as the engine
    refuses it: vLLM (vllm/config.py, _get_and_verify_max_len: "User-specified max_model_len ... is greater than the
    derived max_model_len"), SGLang from 0.5.1 (SGLANG_REFUSES_LONGER_CONTEXT). TensorRT-LLM's PyTorch backend starts,
    lowering max_seq_len to its maximum ("Specified max_seq_len=... is larger than what the model can support ...
    Setting max_seq_len to ...", _torch/pyexecutor/model_engine.py _init_max_seq_len; "py_executor_creator makes sure
    that the executor uses this smaller value"), so no request runs past it; only TLLM_ALLOW_LONG_MAX_MODEL_LEN=1
    (PR 10600, January 2026) keeps the longer one, which a spec cannot state."""
    if spec.workload != "inference":
        return
    inf = spec.inference
    if inf.context_length <= _served_maximum(inf, arch) or not (longest := model_maximum(inf, arch)):
        return
    where = ("config.json's max_position_embeddings" if spec.model.hugging_face_config
             else f"maxPositionEmbeddings of preset {spec.model.preset}" if spec.model.preset
             else "spec.model.architecture.maxPositionEmbeddings")
    if inf.engine == "sglang" and arch.sglang_max_context:
        how = ("SGLang's get_context_length: x rope_scaling's factor unless it names original_max_position_embeddings "
               "or is llama3")
    elif inf.engine == "tensorrt-llm" and arch.trtllm_max_context:
        how = "TensorRT-LLM's infer_max_seq_len: x rope_scaling's factor unless su, longrope, llama3 or yarn"
    else:
        how = "rope_scaling applied as vLLM's _get_and_verify_max_len does"
    refuses = (f"{inf.engine} lowers max_seq_len to {longest} with a warning, so no request runs past it"
               if inf.engine == "tensorrt-llm" else f"{inf.engine} refuses a longer context")
    raise InvalidWorkload([("spec.inference.contextLength",
                            f"{inf.context_length} exceeds the model's maximum context of {longest} tokens as "
                            f"{inf.engine} derives it from {where} ({how}); {refuses}")])


def refusal(engine: str, context: int, kv_tokens: int, largest: int, max_context: int = 0,
            starts: bool | None = False) -> str:
    """What the engine says when one full-length request does not fit (vLLM: vllm/v1/core/kv_cache_utils.py,
    check_enough_kv_cache_memory, naming the longest request that fits: engines.largest_context); the largest context
    that fits is capped by the model's maximum. SGLang starts anyway and rejects requests longer than its pool
    (engines.py SGLANG_MIN_POOL_TOKENS)."""
    largest = min(largest, max_context) if max_context else largest
    if starts:
        return (f"{engine} would start but reject requests longer than about {largest} tokens: one request of "
                f"contextLength {context} needs more KV cache than the {kv_tokens} tokens left on this GPU "
                "(raise gpuMemoryUtilization, lower contextLength, or use more GPUs)")
    return (f"{engine} would refuse to start: one request of contextLength {context} needs more KV cache than "
            f"the {kv_tokens} tokens left on this GPU; the largest context that fits is about {largest} tokens "
            "(raise gpuMemoryUtilization, lower contextLength, or use more GPUs)")


def _inference(spec: LLMWorkloadSpec, arch: ModelArch, layout: Layout, weights: int) -> tuple[dict, str]:
    inf = spec.inference
    sequences = inf.per_replica(layout.data)
    chunk = min(inf.chunk_tokens, sequences * inf.context_length)
    kv = kv_cache_bytes(arch, inf.kv_cache_precision, layout, inf.context_length, sequences, chunk)
    act = inference_activation_bytes(arch, layout, chunk, sequences)
    return dict(weights_bytes=weights, kv_cache_bytes=kv, activations_bytes=act,
                slack=int(SLACK_PREFILL * (kv + act))), "prefill"


def _load_note(tr: Training, precision: str, p: ParamCounts, layout: Layout) -> str:
    """Why the peak comes before the first step, and what a user can change, for each load-time mechanism that
    applies to the job (the larger of them set the peak)."""
    why = []
    if whole_quantized_load(tr, precision, layout.data):
        why.append("each rank loads and quantizes the whole model on its GPU before FSDP2 shards it (accelerate's "
                   "fsdp_cpu_ram_efficient_loading off); training.cpuRamEfficientLoading: true loads it on the CPU")
    elif tr.framework == "fsdp" and tr.fsdp == 1:
        why.append("FSDP1's wrap holds the unsharded model's blocks beside the new shards")
    if ddp_wrap_holds_copies(tr, layout):
        why.append("DDP's construction on PyTorch before 2.8 (training.torchVersion) keeps flat copies of the "
                   "buckets it broadcasts; PyTorch 2.8 or TORCH_NCCL_AVOID_RECORD_STREAMS=1 frees each as it is sent")
    if tr.framework == "deepspeed" and tr.zero_init is False:
        why.append("deepspeed.initialize moves the whole model, built outside deepspeed.zero.Init, to each GPU before "
                   "ZeRO-3 partitions it; zeroInit true (accelerate's zero3_init_flag: true) partitions it as it loads")
    if kbit_vocab_recast_bytes(p, tr, precision):
        why.append("the trainer casts the 4/8-bit base's embeddings, head and norms to fp32 and back "
                   "(kbitNormsFp32 false), all fp32 copies alive at once")
    return "peak at load, before the first step: " + "; ".join(why or ["the model's load"])


def _training(spec: LLMWorkloadSpec, arch: ModelArch, p: ParamCounts, layout: Layout, weights: int,
              architecture: str | None = None) -> tuple[dict, str, int]:
    """The breakdown at the step's peak per GPU, its phase and the host memory an offload takes per GPU: the
    transformers Trainer's moments here, the other frameworks' in _runtime (on a GPU of `architecture`,
    runtime_peak)."""
    tr = spec.training
    if tr.framework != "transformers":
        return _runtime(spec, arch, p, layout, weights, architecture)
    s = _trainer_step(spec, arch, p, layout, weights)
    live = _largest_moment(s)
    # optimizer_in_bwd steps one parameter at a time, its temporaries counted in the backward above
    # (with expandable segments the step's temporaries are mapped onto the pages the backward freed: none unfit)
    unfit = 0 if tr.optimizer_in_backward or tr.expandable_segments else \
        unfit_step_temporaries(arch, tr, layout, s.trained_bytes)
    if unfit:
        live = _unfit_step(s, live, unfit)
    return *_before_first_step(spec, p, s, live), 0


# --- _training's phases (the transformers Trainer) -----------------------------------------------------------


@dataclass(frozen=True)
class _TrainerStep:
    """The Trainer's step on this rank: its model states, activations and the bytes of each of its moments."""

    tr: Training
    layout: Layout
    states: ModelStates
    act: TrainingActivations
    dequant: int                # bitsandbytes' dequantized frozen matrix in the backward
    loss: int                   # the loss's peak on this stage (0 without the logits)
    accumulated: int            # the param.grad held under gradient accumulation
    grads_during_backward: int  # the gradients live in the backward
    param_grads: int            # DDP's param.grad beside its buckets
    trained_bytes: int          # bytes a trained parameter
    temp: int                   # the optimizer step's temporaries
    step_peak: int
    backward_peak: int
    layer0: int                 # what layer 0 keeps live at the backward's end
    backward_end: int
    cached_logits: int          # the freed 16-bit logits' block the allocator keeps cached


def _trainer_step(spec: LLMWorkloadSpec, arch: ModelArch, p: ParamCounts, layout: Layout,
                  weights: int) -> _TrainerStep:
    """The model states and activations, then the backward's, its end's and the optimizer step's bytes."""
    tr = spec.training
    mixed = tr.method == "full" and tr.master_weights == "fp32"
    # peft's prepare keeps a bitsandbytes base's embeddings, head and norms in fp32 before TRL 0.7.5 (estimator/peft.py)
    states = model_states(arch, p, tr, spec.precision, layout, weights + kbit_fp32_vocab_bytes(p, tr, spec.precision))
    act = training_activations(arch, tr, layout, mixed or kbit_fp32_residual(tr, spec.precision),
                               fp16=spec.precision == "fp16", fp32=pure_fp32_activations(tr, spec.precision))
    # bitsandbytes' backward dequantizes one whole frozen matrix beside the layer it runs in (estimator/peft.py)
    # (its block is freed and re-requested at the same sizes layer after layer, so it adds no slack)
    dequant = bnb_backward_dequant_bytes(arch, tr, spec.precision, layout)
    # the bare decoder (training.lmHead false: transformers' AutoModel, "outputting raw hidden-states without any
    # specific head on top") makes no vocabulary-wide logits; its task head's over a few pooled tokens is not counted
    logits_on_this_stage = layout.pipeline == 1 and tr.lm_head is not False
    # the 16-bit copy autocast makes of a frozen fp32 head, saved by the head for its backward (estimator/peft.py)
    head_cast = kbit_fp32_head_cast_bytes(arch, p, tr, spec.precision)
    loss = (max(act.loss_backward, act.loss_forward + states.autocast_cache) + head_cast
            if logits_on_this_stage else 0)
    # DDP (and ZeRO) keep gradient buckets allocated across steps; a lone GPU frees them after each step
    # gradient accumulation: every param.grad held from the second micro-batch on (accumulation.py)
    accumulated = transformers_accumulated_grads(tr, layout, states.gradients)
    grads_during_backward = (states.gradients if layout.data > 1 else 0) + accumulated
    param_grads = ddp_param_grads(tr, layout, states.gradients)
    if tr.method != "full":
        trained_bytes = lora_element_bytes(tr)  # the adapters' dtype (training.adapterDtype)
    else:
        trained_bytes = 4 if mixed or spec.precision == "fp32" else 2
    stepping = states.trainable // layout.data if tr.zero_stage and layout.data > 1 else states.trainable
    largest = largest_parameter(arch, tr, layout.tensor * layout.pipeline)
    temp = step_temporary_bytes(tr, stepping, trained_bytes, largest)
    step_peak = states.gradients + param_grads + temp
    if tr.optimizer_in_backward:
        # torchtune's optimizer_in_bwd (torchtune/training/memory.py register_optim_in_bwd_hooks, at 30b8519e8 and
        # 1814feb17): one optimizer per parameter, `p.register_post_accumulate_grad_hook(optim_step)` with optim_step
        # `optim_dict[param].step(); optim_dict[param].zero_grad()` (set_to_none). A gradient lives from its
        # accumulation to its step, inside the backward beside the activations; no moment holds them all and no
        # step follows. Counted at the backward's peak: the largest parameter's gradient and its step's temporaries.
        grads_during_backward += largest * trained_bytes + step_temporary_bytes(tr, largest, trained_bytes, largest)
        step_peak = 0
    backward_peak = act.layers + max(loss, act.recompute + dequant) + grads_during_backward
    # DDP: every param.grad made beside the buckets, layer 0's recompute still live (docs/accuracy.md, issue 22).
    # Without whole-layer recompute layer 0's saved activations are live there instead: autograd frees a node's saved
    # tensors only when its backward has run (torch/csrc/autograd/function.h `release_variables`), and layer 0's
    # param.grad is made by that backward (AccumulateGrad); selective keeps the rest of the layer beside its recomputed
    # attention (activations.training_activations: kept = layers x (per_layer - attention)).
    # (layer 0's attention backward has run by then: its transient is gone)
    layer0 = act.recompute - act.attention_backward + \
        (act.layers // arch.num_layers if tr.activation_checkpointing != "full" else 0)
    backward_end = states.gradients + param_grads + layer0 if param_grads else 0
    # before transformers 4.46 the 16-bit logits' block, freed at the model's upcast, is cached (not allocated)
    # beside the loss's fp32 buffers (activations.freed_16bit_logits_bytes): reserved at the loss's moments
    cached_logits = freed_16bit_logits_bytes(arch, tr, layout.tensor) if logits_on_this_stage else 0
    return _TrainerStep(tr=tr, layout=layout, states=states, act=act, dequant=dequant, loss=loss,
                        accumulated=accumulated, grads_during_backward=grads_during_backward,
                        param_grads=param_grads, trained_bytes=trained_bytes, temp=temp, step_peak=step_peak,
                        backward_peak=backward_peak, layer0=layer0, backward_end=backward_end,
                        cached_logits=cached_logits)


@dataclass(frozen=True)
class _Moment:
    """The breakdown of one moment of the step, in bytes, and its phase."""

    act: int
    grads: int
    optimizer: int
    slack: int
    phase: str


def _largest_moment(s: _TrainerStep) -> _Moment:
    """The largest of the backward's peak, its end and the optimizer step, with the slack the allocator keeps."""
    act, states = s.act, s.states
    optimizer = states.optimizer
    held_dequant = 0  # the dequantized matrix when it is part of the peak
    if s.backward_peak >= s.step_peak and s.backward_peak >= s.backward_end:
        live_act, live_grads = act.layers + max(s.loss, act.recompute + s.dequant), s.grads_during_backward
        phase = "loss backward" if s.loss >= act.recompute + s.dequant else \
            "layer recompute" if act.recompute else "layer backward"
        held_dequant = s.dequant if phase != "loss backward" else 0
    elif s.backward_end > s.step_peak:
        live_act, live_grads, phase = s.layer0, states.gradients + s.param_grads, "backward end"
    else:
        live_act, live_grads, phase = 0, states.gradients + s.param_grads, "optimizer step"
        optimizer += s.temp
    return _Moment(live_act, live_grads, optimizer,
                   _slack(s, phase, live_act, live_grads, optimizer, held_dequant), phase)


def _slack(s: _TrainerStep, phase: str, live_act: int, live_grads: int, optimizer: int, held_dequant: int) -> int:
    """What the caching allocator keeps reserved beside the moment `phase`'s live bytes."""
    layout = s.layout
    # DDP/ZeRO gradient buckets are allocated once and kept; a lone GPU allocates gradients each step, and so
    # does DDP its param.grad (freed by the Trainer's zero_grad, set_to_none).
    # The slack is what the backward leaves cached; the step's temporaries come after it and add none.
    transient = live_act + (live_grads if layout.data == 1 else 0)
    transient += s.accumulated if layout.data > 1 and phase not in ("backward end", "optimizer step") else 0
    transient += s.param_grads if phase in ("backward end", "optimizer step") else 0
    transient += s.cached_logits if phase == "loss backward" else 0
    share = _slack_share(s, phase in ("loss backward", "layer recompute"))
    slack = int(share * (transient - held_dequant)) + (s.cached_logits if phase == "loss backward" else 0)
    if phase in ("backward end", "optimizer step"):
        backward_share, backward_cached = _backward_cache(s)
        # the caching allocator keeps what the backward reserved (nothing is released between them): the step's or
        # the backward end's moment reserves no less than the backward before it (the backward phase's count above)
        b_act = s.act.layers + max(s.loss, s.act.recompute + s.dequant)
        b_transient = b_act + backward_cached + (s.grads_during_backward if layout.data == 1 else s.accumulated)
        b_dequant = s.dequant if s.loss < s.act.recompute + s.dequant else 0
        backward_reserved = (b_act + s.grads_during_backward + int(backward_share * (b_transient - b_dequant))
                             + backward_cached)
        slack = max(slack, backward_reserved - (live_act + live_grads + optimizer - s.states.optimizer))
    return slack


def _slack_share(s: _TrainerStep, backward: bool) -> float:
    """The share of a moment's transient bytes the caching allocator keeps reserved beside them."""
    if s.tr.expandable_segments:
        # PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (c10/cuda/CUDACachingAllocator.cpp, ExpandableSegment):
        # one segment per stream grown by mapping 2 MiB pages and shrunk by unmapping them, so the blocks a
        # recomputed layer or the first step's states split are remapped for requests of any size. As _runtime
        # counts it for fsdp, deepspeed and megatron: SLACK_TRAINING of the transient bytes, no recompute share
        # and no state split (T1940: the study's loop sets it; max reserved 27.75 GiB beside 27.61 allocated)
        return SLACK_TRAINING
    # whole layers recomputed (the H200 rows' checkpointing); selective recomputes only attention's core
    recompute = s.tr.activation_checkpointing == "full"
    share = SLACK_RECOMPUTE if recompute else SLACK_TRAINING
    if backward and recompute and s.tr.method == "full" and s.states.optimizer:
        share += SLACK_STATE_SPLIT
    return share


def _backward_cache(s: _TrainerStep) -> tuple[float, int]:
    """The backward phase's slack share and the logits' block it keeps cached (the loss's moment), for the
    moments after it."""
    backward_share = _slack_share(s, backward=True)
    backward_cached = s.cached_logits if s.loss >= s.act.recompute + s.dequant else 0
    return backward_share, backward_cached


def _unfit_step(s: _TrainerStep, live: _Moment, unfit: int) -> _Moment:
    """The optimizer step's moment when its `unfit` temporaries take new segments, if it reserves more than `live`."""
    backward_share, backward_cached = _backward_cache(s)
    # foreach AdamW's temporaries too large for the backward's cached blocks take new segments beside them
    # (estimator/peft.py): the step reserves the backward's peak and its slack, plus those temporaries
    backward_act = s.act.layers + max(s.loss, s.act.recompute)
    step_reserved = (s.backward_peak + backward_cached + int(backward_share * (backward_act + backward_cached))
                     + unfit)
    if step_reserved > live.act + live.grads + (live.optimizer - s.states.optimizer) + live.slack:
        grads = s.states.gradients
        return _Moment(0, grads, s.states.optimizer + s.temp, step_reserved - grads - s.temp, "optimizer step")
    return live


def _before_first_step(spec: LLMWorkloadSpec, p: ParamCounts, s: _TrainerStep, live: _Moment) -> tuple[dict, str]:
    """`live`'s breakdown, or the load's where a moment before the first step reserves more."""
    tr, states = s.tr, s.states
    # two moments before the first step can reserve more than it; the step is then served from their cached blocks,
    # so the larger counts. DDP's construction before torch 2.8 (training.ddp_wrap_copies): the model and a flat copy
    # of its buckets. The fp32 embeddings, head and norms a trainer casts back to 16 bits (estimator/peft.py), all
    # alive before the cast back: allocated, the 16-bit weights less their 16-bit copies plus the fp32 ones (2 bytes a
    # parameter more); cached, the freed 16-bit blocks (2 bytes). No gradient or optimizer state exists yet at either
    copies = ddp_wrap_copies(tr, s.layout, states.weights)
    recast = kbit_vocab_recast_bytes(p, tr, spec.precision)
    if max(copies, recast) > live.act + live.grads + live.optimizer + live.slack:
        if copies >= recast:
            return dict(weights_bytes=states.weights, activations_bytes=0, gradients_bytes=0, optimizer_states_bytes=0,
                        slack=copies), "load"
        return dict(weights_bytes=states.weights + recast // 2, activations_bytes=0, gradients_bytes=0,
                    optimizer_states_bytes=0, slack=recast - recast // 2), "load"
    return dict(weights_bytes=states.weights, activations_bytes=live.act, gradients_bytes=live.grads,
                optimizer_states_bytes=live.optimizer, slack=live.slack), live.phase


def _step_segments(r) -> int:
    """Bytes of the optimizer step's temporaries that take new segments without expandable segments. The caching
    allocator (c10/cuda/CUDACachingAllocator.cpp `malloc`) serves a request from the smallest cached block of its stream
    at least as large (`get_free_block`: the pool ordered by stream and size, `lower_bound`), splits off the remainder
    (`should_split`: over 1 MiB, max_split_size unlimited by default) and calls cudaMalloc (`alloc_block`, a segment of
    the request rounded to 2 MiB) only when no such block exists. FSDP2 over `data` > 1 steps one tensor per parameter
    shard (fsdp.step_segment_inputs): the largest no larger than the logits' block the loss's backward freed, and
    with the first step's optimizer states no more than the backward freed in all, they are served from its cached
    blocks and add none. Elsewhere (FSDP1's flat parameters, ZeRO's and Megatron's flat partitions) the step's
    temporaries are counted in new segments, as before; ZeRO-3's step against the blocks its loss's backward freed
    (zero.zero3_step_segments, RuntimePeak.step_segments)."""
    if r.step_segments >= 0:
        return r.step_segments
    if r.step_largest and r.step_largest <= r.freed_block and \
            r.step_first_states + r.step_transient <= r.backward_transient - r.reused:
        return 0
    return r.step_transient


def _runtime(spec: LLMWorkloadSpec, arch: ModelArch, p: ParamCounts, layout: Layout, weights: int,
             architecture: str | None = None) -> tuple[dict, str, int]:
    """fsdp, deepspeed, megatron (estimator/frameworks.py), and the caching allocator's reservation; with them
    the host memory an offload takes per GPU.

    The backward leaves its blocks cached: SLACK_RECOMPUTE of them where whole layers are recomputed (full
    checkpointing, as on the H200 rows that set it), else SLACK_TRAINING, is stranded. Without expandable
    segments the optimizer step's temporaries (a foreach list per parameter, a flat fp32 partition) are
    larger than those cached per-layer blocks, so they take new segments: the reservation is the
    backward's plus the step's (not FSDP2's per-shard tensors where they fit the blocks the backward freed:
    _step_segments). With expandable segments (torchtitan) freed pages are remapped for any
    size: the step reuses them, and recomputation strands no more than the backward does. FSDP's gathered parameters
    (`reused`, fsdp.fsdp_gathered_reuse) are re-requested at the sizes just freed and strand none."""
    tr = spec.training
    r = runtime_peak(arch, p, tr, spec.precision, layout, weights, architecture=architecture)
    if r.expandable_segments:
        slack = int(SLACK_TRAINING * (r.transient - (r.reused if r.transient == r.backward_transient else 0)))
    else:
        share = SLACK_RECOMPUTE if tr.activation_checkpointing == "full" else SLACK_TRAINING
        slack = int(r.backward_transient + share * (r.backward_transient - r.reused) + _step_segments(r)) - r.transient
    # FSDP1's unshard streams' pools beside the default stream's at its loss moment (fsdp.fsdp1_unshard_pool_cached)
    slack += r.unshard_cached
    step_total = r.weights + r.activations + r.gradients + r.optimizer + slack
    if r.load_unshard_pool and step_total - r.load_unshard_pool < r.load + r.load_cached <= step_total:
        # FSDP1 LoRA/QLoRA: the wrap's cached blocks serve the step's default stream only; its all-gathers reserve
        # their own stream's pool beside them (fsdp.fsdp1_reserved_union)
        union = fsdp1_reserved_union(r.load + r.load_cached, step_total, r.load_unshard_pool)
        return dict(weights_bytes=r.weights, activations_bytes=r.activations, gradients_bytes=r.gradients,
                    optimizer_states_bytes=r.optimizer, slack=slack + union - step_total), r.phase, r.host_offload
    if r.load + r.load_cached > step_total:
        # FSDP1's wrap (fsdp.fsdp1_wrap_peak) reserves more than the step: a job that cannot wrap its model
        # does not run, and the blocks it leaves cached are reserved when the step begins
        # (FSDP1 LoRA/QLoRA: plus the step's unshard stream pool, fsdp.fsdp1_reserved_union)
        union = fsdp1_reserved_union(r.load + r.load_cached, step_total, r.load_unshard_pool)
        return dict(weights_bytes=r.load, activations_bytes=0, gradients_bytes=0, optimizer_states_bytes=0,
                    slack=union - r.load), "load", r.host_offload
    return dict(weights_bytes=r.weights, activations_bytes=r.activations, gradients_bytes=r.gradients,
                optimizer_states_bytes=r.optimizer, slack=slack), r.phase, r.host_offload
