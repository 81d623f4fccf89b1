"""Which GPU model runner vLLM runs a model through (the new runner's releases and architectures), and the model traits
it decides by: recurrent or attention-free layers, and the architecture class a checkpoint names.

Pure: no I/O. Every mechanism names the engine source it comes from.
"""

from __future__ import annotations

from rackfit.models import ModelArch
from rackfit.spec import Inference
from rackfit.spec.releases import VLLM_V2_RUNNER_BY_MODEL, VLLM_V2_RUNNER_ONLY

# 0.34.0 runs every model through the new GPU model runner (v1/worker/gpu/model_runner.py; gpu_worker.py
# _make_model_runner no longer imports gpu_model_runner.py; 0.22.0-0.33.x chose it by model and
# VLLM_USE_V2_MODEL_RUNNER: v2_runner below).
V2_RUNNER = VLLM_V2_RUNNER_ONLY
# Before 0.34.0 the new runner is the default only for some models (vllm/config/vllm.py VllmConfig.use_v2_model_runner,
# read in the 0.21.0-0.33.0 wheels; VLLM_USE_V2_MODEL_RUNNER, unset, overrides it): _is_default_v2_model_runner_model
# from 0.22.0 takes the architectures of DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES (V2_ARCHITECTURES: release first listed,
# release dropped), dense and unquantized only through 0.23.x (`not is_moe and not is_quantized`, V2_LISTED_ANY), every
# listed one in 0.24.x; from 0.25.0 (V2_DENSE_DEFAULT) every model that is not MoE, plus the listed MoE ones, never a
# hybrid or attention-free one (0.27.0, V2_LISTED_HYBRID: unless listed); from 0.29.0 (V2_EVERY_MODEL) the check is
# gone and every model takes it. _get_v2_model_runner_unsupported_features sends a spec back to the old runner for
# speculation by a draft model before 0.31.0 (V2_DRAFT_MODEL, vLLM PR 43091) and by n-grams before 0.32.0 (V2_NGRAM,
# PR 40704; both read in the 0.22.0, 0.26.0, 0.30.0-0.33.0 wheels; EAGLE, EAGLE-3 and MTP run on it from 0.22.0), and
# for what rackfit's spec does not say (custom logits processors, prompt embeds, dual batch overlap, stock
# torch.compile, sequence parallelism, pipeline parallel under external_launcher, 0.22.0-0.24.x: hybrid/mamba models);
# rackfit plans the default.
V2_DRAFT_MODEL = (0, 31)
V2_NGRAM = (0, 32)
V2_BY_ARCHITECTURE = VLLM_V2_RUNNER_BY_MODEL
V2_LISTED_ANY = (0, 24)
V2_DENSE_DEFAULT = (0, 25)
V2_LISTED_HYBRID = (0, 27)
V2_EVERY_MODEL = (0, 29)
V2_ARCHITECTURES = (
    ("Qwen3ForCausalLM", (0, 22), (0, 25)), ("LlamaForCausalLM", (0, 23), (0, 25)),
    ("MistralForCausalLM", (0, 23), (0, 25)), ("DeepseekV2ForCausalLM", (0, 24), V2_EVERY_MODEL),
    ("Qwen2MoeForCausalLM", (0, 24), V2_EVERY_MODEL), ("GraniteMoeForCausalLM", (0, 24), V2_EVERY_MODEL),
    ("InklingForCausalLM", (0, 26), V2_EVERY_MODEL), ("LongcatFlashNgramForCausalLM", (0, 26), V2_EVERY_MODEL),
    ("KimiK3ForConditionalGeneration", (0, 27), V2_EVERY_MODEL), ("DeepseekV4ForCausalLM", (0, 28), V2_EVERY_MODEL))
# Names of checkpoints whose layers are recurrent (Mamba, gated delta-net) or attention-free: vLLM's is_hybrid /
# is_attention_free / has_inner_state.
RECURRENT_NAMES = ("mamba", "jamba", "zamba", "nemotron-h", "falcon-h1", "granite-4.0-h", "qwen3-next", "qwen3.5",
                   "qwen3.6", "qwen3_5", "qwen3_next", "rwkv", "minimax-m1", "lfm2")


def recurrent(a: ModelArch) -> bool:
    """A hybrid recurrent (Mamba-style) or linear-attention model, by its name (RECURRENT_NAMES) or, for an architecture
    given without one, by its linear layers (linearAttentionLayers: vLLM's is_hybrid model classes)."""
    n = a.name.lower().replace("_", "-")
    return a.linear_attention_layers > 0 or any(r.replace("_", "-") in n for r in RECURRENT_NAMES)


def vllm_architecture(a: ModelArch) -> str | None:
    """The vLLM architecture class a checkpoint's config.json names, as far as V2_ARCHITECTURES needs it, from the
    model's name (preset, _name_or_path or model_type, as gpt_oss does); None for any other or a bare architecture.
    Multimodal checkpoints load as ...ForConditionalGeneration, none of which the lists name before 0.27.0."""
    n = a.name.lower().replace("_", "-")
    if recurrent(a):
        return None
    for arch, mark in (("DeepseekV4ForCausalLM", "deepseek-v4"), ("KimiK3ForConditionalGeneration", "kimi-k3"),
                       ("LongcatFlashNgramForCausalLM", "longcat-flash-ngram"), ("InklingForCausalLM", "inkling")):
        if mark in n:
            return arch
    if a.vision_parameters:
        return None
    if "deepseek-v2" in n or "deepseek-coder-v2" in n:
        return "DeepseekV2ForCausalLM"
    if a.is_moe:
        if "qwen1.5-moe" in n or "qwen2-moe" in n or "qwen2-57b" in n:
            return "Qwen2MoeForCausalLM"
        return "GraniteMoeForCausalLM" if "granite" in n else None
    if "qwen3" in n:
        return "Qwen3ForCausalLM"
    if "llama" in n and "llama-4" not in n and "llama4" not in n:
        return "LlamaForCausalLM"
    if "mistral" in n:
        return "MistralForCausalLM"
    return None


def v2_runner(inf: Inference, a: ModelArch | None = None) -> bool:
    """Whether vLLM runs this model through its new GPU model runner (V2_BY_ARCHITECTURE ... V2_EVERY_MODEL, V2_RUNNER):
    as the spec says (v2ModelRunner: VLLM_USE_V2_MODEL_RUNNER, which VllmConfig.use_v2_model_runner returns before any
    other test when set, read in the 0.26.0 wheel; the spec allows it from V2_BY_ARCHITECTURE and `false` only before
    V2_RUNNER), else by release, then by the model (`a`; without one, only from V2_EVERY_MODEL)."""
    if inf.engine != "vllm" or inf.vllm_before(V2_BY_ARCHITECTURE):
        return False
    if inf.v2_model_runner is not None:
        return inf.v2_model_runner
    if ((inf.speculative_method == "draft" and inf.vllm_before(V2_DRAFT_MODEL))
            or (inf.speculative_method == "ngram" and inf.vllm_before(V2_NGRAM))):
        return False
    if not inf.vllm_before(V2_EVERY_MODEL):
        return True
    if a is None:
        return False
    arch = vllm_architecture(a)
    listed = any(arch == name and not inf.vllm_before(first) and inf.vllm_before(until)
                 for name, first, until in V2_ARCHITECTURES)
    hybrid = recurrent(a)
    if inf.vllm_before(V2_DENSE_DEFAULT):
        return listed and not hybrid and (not inf.vllm_before(V2_LISTED_ANY)
                                             or (not a.is_moe and a.quantization is None))
    if hybrid and (not listed or inf.vllm_before(V2_LISTED_HYBRID)):
        return False
    return listed or not a.is_moe
