"""What runs on GPUs before Ampere (Volta, Turing: compute capability below 8.0), by runtime and release."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.models import ModelArch
from rackfit.spec import LLMWorkloadSpec

# Volta and Turing (compute capability below 8.0) and what runs there. vLLM with dtype auto casts a bf16 model to fp16
# from 0.9.0 (vllm/config.py _get_and_verify_dtype: "Falling back to %s for compatibility", the first of
# current_platform.supported_dtypes, [float16, float32] below 8.0 in platforms/cuda.py; read in 0.9.0); 0.8.5 and
# earlier keep the checkpoint's bf16 and the worker refuses it (worker/worker.py _check_if_gpu_supports_dtype:
# "Bfloat16 is only supported on GPUs with compute capability of at least 8.0 ... --dtype=half"). fp8 checkpoints
# (Fp8Config, FBGEMMFp8Config, FP8 Marlin: is_fp8_marlin_supported), modelopt's and mxfp4's need 8.0 or more
# (get_min_capability, read in 0.9.0); AWQ needs 7.5 (AWQConfig.get_min_capability), so not Volta. The other runtimes
# are not modelled without bf16: rackfit refuses bf16 there rather than guess their cast.
PRE_AMPERE = ("volta", "turing")
COMPUTE_CAPABILITY = {"volta": "7.0", "turing": "7.5"}
VLLM_BF16_TO_FP16 = (0, 9)
# V1 (the default from 0.8.0) falls back to V0 below compute capability 8.0 until 0.10.2 (engine/arg_utils.py
# _is_v1_supported_oracle: "Compute Capability < 8.0", read in 0.8.5, 0.9.0, 0.10.0 and 0.10.1.1; gone in 0.10.2,
# where V1 runs FlexAttention there). The V0 engine then sizes the cache (vllm/worker/worker.py
# determine_num_available_blocks, memory_profiling against the snapshot taken in init_device, after the CUDA context:
# "Initializing a V0 LLM engine (v0.8.2)" on a T4, S1552), so `estimate` estimates these as VLLM_USE_V1=0.
VLLM_V1_PRE_AMPERE = (0, 10, 2)
_NEEDS_SM80 = ("fp8", "fbgemm_fp8", "mxfp4", "modelopt")


def bf16_cast(spec: LLMWorkloadSpec, gpu: GPU | None) -> bool:
    """vLLM (0.9.0 on) serves a bf16 `spec` as fp16 on this pre-Ampere GPU (the comment above)."""
    return (gpu is not None and gpu.architecture in PRE_AMPERE and spec.precision == "bf16"
            and spec.workload == "inference" and spec.inference.engine == "vllm"
            and not spec.inference.vllm_before(VLLM_BF16_TO_FP16))


def v0_fallback(spec: LLMWorkloadSpec, gpu: GPU | None) -> bool:
    """vLLM's release runs V0 on this pre-Ampere GPU although it defaults to V1 (the comment above)."""
    return (gpu is not None and gpu.architecture in PRE_AMPERE and spec.workload == "inference"
            and spec.inference.engine == "vllm" and spec.inference.engine_version is not None
            and not spec.inference.vllm_v0 and spec.inference.vllm_before(VLLM_V1_PRE_AMPERE))


def pre_ampere_refusal(spec: LLMWorkloadSpec, arch: ModelArch, gpu: GPU | None) -> tuple[str, str] | None:
    """(field, why) where `spec` cannot run on a Volta or Turing GPU (the comment above), else None."""
    if gpu is None or gpu.architecture not in PRE_AMPERE:
        return None
    where = f"{gpu.model} ({gpu.architecture}, compute capability {COMPUTE_CAPABILITY[gpu.architecture]})"
    q = arch.quantization
    if q is not None:  # the checkpoint's quantization_config decides the weights, not spec.precision
        if q.method in _NEEDS_SM80:
            return "spec.model", (f"the checkpoint's {q.method} weights do not run on {where}: vLLM's {q.method} "
                                  "kernels need compute capability 8.0 or more; give an Ampere or later GPU")
        if q.method == "awq" and gpu.architecture == "volta":
            return "spec.model", (f"the checkpoint's awq weights do not run on {where}: vLLM's AWQ kernels need "
                                  "compute capability 7.5 (Turing) or more")
        return None
    if spec.precision not in gpu.formats and spec.precision != "bf16":
        return "spec.precision", (f"{spec.precision} does not run on {where}: fp8 and fp4 kernels need compute "
                                  f"capability 8.0 or more; it runs {', '.join(sorted(gpu.formats))}")
    if spec.precision == "bf16" and not bf16_cast(spec, gpu):
        inference = spec.workload == "inference"
        if inference and spec.inference.engine == "vllm":
            return "spec.precision", (f"bf16 does not run on {where}: vLLM {spec.inference.engine_version} refuses "
                                      "bfloat16 below compute capability 8.0; give fp16 (vLLM --dtype half), or "
                                      "engineVersion 0.9.0 or later, which casts a bf16 model to fp16")
        runtime = spec.inference.engine if inference else spec.training.framework
        return "spec.precision", (f"bf16 does not run on {where}: no bf16 tensor cores below compute capability "
                                  f"8.0, and rackfit does not model how {runtime} casts it; give fp16")
    return None
