"""What makes vLLM 0.8.0-0.10.x, whose default engine is V1, run its V0 engine instead, where the spec states it.

vllm/engine/arg_utils.py EngineArgs._is_v1_supported_oracle decides, with VLLM_USE_V1 unset, which engine serves:
`_raise_or_fallback` logs "<feature> is not supported by the V1 Engine. Falling back to V0." and `_warn_or_fallback`
"<feature> is experimental on VLLM_USE_V1=1. Falling back to V0 Engine."; either returns False and V0 serves. Read in
the 0.8.0, 0.8.1, 0.8.2, 0.8.3, 0.8.4, 0.8.5, 0.9.0, 0.9.1, 0.9.2, 0.10.0, 0.10.1 and 0.10.2 wheels. What a spec
states, by release:
- `--dtype float32` (precision fp32): V1_SUPPORTED_DTYPES = [bfloat16, float16], 0.8.0-0.9.1 (gone in 0.9.2).
- bitsandbytes weights (precision nf4, or a checkpoint whose quant_method is bitsandbytes):
  V1_UNSUPPORTED_QUANT = ["bitsandbytes", "gguf"] in 0.8.0-0.8.2, ["gguf"] in 0.8.3-0.8.5, gone in 0.9.0 (gguf has
  no precision in the spec).
- LoRA (--enable-lora: maxLoras / maxLoraRank): `_warn_or_fallback("LORA")`, 0.8.0-0.8.2 (gone in 0.8.3).
- speculative decoding: 0.8.0-0.8.4 only ngram is admitted, and as `_warn_or_fallback("ngram")` (0.8.3-0.8.4 eagle
  too, `_warn_or_fallback("Eagle")`), so every method runs V0; 0.8.5 the same (ngram, eagle, eagle3 experimental, the
  rest "Speculative Decoding" not supported). 0.9.0-0.9.2 admit ngram, medusa, eagle, eagle3 and deepseek_mtp;
  a draft model falls back. 0.10.0 refuses a draft model (NotImplementedError), not modelled here.
- an fp8 KV cache (--kv-cache-dtype fp8): 0.8.0-0.8.1 any non-auto cache dtype; 0.8.2-0.9.2 unless FlashAttention 3
  serves it (fa_utils.flash_attn_supports_fp8: FA version 3 and compute capability major 9, Hopper);
  0.10.0-0.10.1 unless platforms/cuda.py is_kv_cache_dtype_supported (Hopper's FA3, or compute capability 10.0,
  B200: rackfit's `blackwell` does not tell 10.0 from 12.0, so a Blackwell GPU is left as V1 there).
Pipeline parallel (0.8.0-0.8.2 `_warn_or_fallback("PP")`, then without the Ray executor) is engine_defaults.
v0_under_pipeline's, and below compute capability 8.0 pre_ampere.v0_fallback's. Not stated by a spec and left out:
--load-format tensorizer / sharded_state, --preemption-mode, --scheduling-policy, --num-scheduler-steps, guided
decoding backends, prompt adapters, --cpu-offload-gb, embedding tasks, Mamba / encoder-decoder models, the
transformers backend, partial prefills, OTLP, KV transfer, attention backends set by environment, a background
thread.
"""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.models import ModelArch
from rackfit.spec import LLMWorkloadSpec

FP32_UNTIL = (0, 9, 2)
BITSANDBYTES_UNTIL = (0, 8, 3)
LORA_UNTIL = (0, 8, 3)
SPECULATIVE_UNTIL = (0, 9)       # every method
DRAFT_UNTIL = (0, 10)            # a draft model (0.10.0 refuses it)
FP8_KV_ANY_UNTIL = (0, 8, 2)     # any fp8 cache
FP8_KV_UNTIL = (0, 10, 2)        # unless Hopper (0.10.x: or compute capability 10.0)
FP8_KV_SM100_FROM = (0, 10)


def v1_unsupported(spec: LLMWorkloadSpec, arch: ModelArch, gpu: GPU | None) -> str | None:
    """The feature (vLLM's word for it) for which the named vLLM release, defaulting to V1, runs V0 (the module's
    comment), else None. None where VLLM_USE_V1 is stated (vllmUseV1 false is V0 already; true raises or runs V1)."""
    if spec.workload != "inference":
        return None
    inf = spec.inference
    if (inf.engine != "vllm" or inf.engine_version is None or inf.vllm_use_v1 is not None or inf.vllm_v0
            or not inf.vllm_before(FP8_KV_UNTIL)):
        return None
    q = arch.quantization
    if spec.precision == "fp32" and q is None and inf.vllm_before(FP32_UNTIL):
        return "--dtype float32"
    bnb = q.method == "bitsandbytes" if q is not None else spec.precision == "nf4"
    if bnb and inf.vllm_before(BITSANDBYTES_UNTIL):
        return "--quantization bitsandbytes"
    if inf.lora_on and inf.vllm_before(LORA_UNTIL):
        return "LORA"
    if inf.speculative_on and (inf.vllm_before(SPECULATIVE_UNTIL)
                               or (inf.speculative_method == "draft" and inf.vllm_before(DRAFT_UNTIL))):
        return "Speculative Decoding"
    if inf.kv_cache_precision == "fp8" and gpu is not None:
        supported = gpu.architecture == "hopper" and not inf.vllm_before(FP8_KV_ANY_UNTIL)
        if gpu.architecture == "blackwell" and not inf.vllm_before(FP8_KV_SM100_FROM):
            supported = True  # compute capability 10.0 admitted, 12.0 not: not told apart, left as V1
        if not supported:
            return "--kv-cache-dtype"
    return None
