"""Model architectures: built-in presets and the resolution of a spec's `model` (a preset, a config.json parsed by
hf_config.py, an architecture block, or a parameter count) into one complete `ModelArch` that the estimator reads."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from rackfit.errors import InvalidWorkload
from rackfit.models.hf_config import (
    architecture_from_hf_config,
    context_config,
    layer_rope_cache_positions_from_hf_config,
    max_context_from_hf_config,
    rope_cache_positions_from_hf_config,
    sglang_context_from_hf_config,
    trtllm_context_from_hf_config,
)
from rackfit.models.quantization import Quantization, checkpoint_quantization
from rackfit.spec import Architecture, ModelSource


def heaviest_stage_layers(num_layers: int, pipeline: int) -> int:
    """Layers on the heaviest pipeline stage: the engines and frameworks give each of `pipeline` stages ceil(L / p)
    consecutive layers (the last one may hold fewer)."""
    return -(-num_layers // pipeline)


class ModelArch(BaseModel):
    """A complete transformer shape. Zero means absent (no experts, no MLA, no sliding window)."""

    model_config = ConfigDict(frozen=True)

    name: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    qk_norm: bool = False  # an RMSNorm/LayerNorm on each head's queries and keys (Qwen3, OLMo 2, Gemma 3)
    gated_mlp: bool = True
    num_experts: int = 0
    num_experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    first_dense_layers: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0
    sliding_window_layers: int = 0
    attention_chunk_size: int = 0  # chunked local attention (Llama 4; 0: none)
    chunked_attention_layers: int = 0
    max_position_embeddings: int = 0  # the longest context supported, as vLLM derives it (0: unknown)
    # the longest context SGLang derives (hf_config.sglang_context_from_hf_config; 0: max_position_embeddings)
    sglang_max_context: int = 0
    # the longest context TensorRT-LLM's PyTorch backend infers (hf_config.trtllm_context_from_hf_config; 0:
    # max_position_embeddings)
    trtllm_max_context: int = 0
    # config.json's model_type (a huggingFaceConfig's, or modelType of a preset or architecture; "" where none)
    model_type: str = ""
    final_logit_softcapping: float = 0.0  # logits = cap * tanh(logits / cap) in the model's forward (Gemma 2; 0: none)
    swiglu_limit: float = 0.0  # the experts' clamped SwiGLU (gpt-oss's swiglu_limit; 0: a plain SwiGLU)
    vision_parameters: int = 0  # a multimodal checkpoint's vision tower, 16-bit (0: text only)
    # the vision encoder's shape and one largest image (spec Architecture; 0: no encoder profile, mm_profile.py)
    vision_hidden_size: int = 0
    vision_intermediate_size: int = 0
    vision_gated_mlp: bool = False
    vision_patches_per_item: int = 0
    vision_tokens_per_item: int = 0
    vision_output_width: int = 0  # one encoder output row (0: hidden_size; Qwen3-VL's deepstack concatenates more)
    vision_num_hidden_layers: int = 0  # vision_config num_hidden_layers (0: the config names none; SGLang takes 24)
    # positions of all the cos/sin caches vLLM's rotary embeddings hold (0: one of max_position_embeddings;
    # rope_cache_positions_from_hf_config, set from a config.json only)
    rope_cache_positions: int = 0
    # positions of the fp32 cos/sin cache SGLang's model file builds in every layer outside get_rope's sharing (Grok 2:
    # models/grok.py ScalingRotaryEmbedding; layer_rope_cache_positions_from_hf_config; 0: none)
    layer_rope_cache_positions: int = 0
    # linear-attention / state-space layers holding one recurrent state per request (spec Architecture;
    # estimator/linear_attention.py; 0: every layer is attention)
    linear_attention_layers: int = 0
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0
    linear_state_float32: bool = False
    attention_output_gate: bool = False  # q_proj twice as wide, its second half gating the output (Qwen3-Next)
    # DeepSeek-V3.2's lightning indexer (spec Architecture; 0: none): its key width and query heads
    index_head_dim: int = 0
    index_num_heads: int = 0
    # Set when only a parameter count is known: weights come from it, the rest is a rough stand-in.
    declared_parameters: int = 0
    # A pre-quantized checkpoint: what each module stores (models/quantization.py); None = the spec's precision
    quantization: Quantization | None = None

    @property
    def rough(self) -> bool:
        return self.declared_parameters > 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def has_indexer(self) -> bool:
        """An MLA model with DeepSeek-V3.2's lightning indexer (sparse attention)."""
        return self.is_mla and self.index_head_dim > 0

    @property
    def query_width(self) -> int:
        """Width of q_proj's output (and o_proj's input): heads x head_dim."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Width of k_proj's (or v_proj's) output: key-value heads x head_dim."""
        return self.num_key_value_heads * self.head_dim

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.first_dense_layers if self.is_moe else 0


@cache
def presets() -> dict[str, dict[str, Any]]:
    text = resources.files("rackfit.models").joinpath("presets.yaml").read_text()
    return {k: v for k, v in yaml.safe_load(text).items() if not k.startswith(".")}  # ".name": YAML anchors


# Preset keys that describe the published checkpoint rather than the shape: its config.json's
# `quantization_config` and `torch_dtype`, as Hugging Face writes them.
_CHECKPOINT_KEYS = ("quantizationConfig", "torchDtype")
# Preset keys read from config.json fields outside the spec's shape: Grok 2's rope_type,
# original_max_position_embeddings and scaling_factor as layer_rope_cache_positions_from_hf_config turns them into
# positions.
_CONFIG_KEYS = {"layerRopeCachePositions": "layer_rope_cache_positions"}


_REQUIRED = ("num_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size")


def resolve(source: ModelSource, hf_config: dict[str, Any] | None = None) -> ModelArch:
    """The complete architecture for a spec's `model`. `hf_config` is the parsed config.json that
    the caller (CLI or operator) read for `huggingFaceConfig`; this function does no I/O."""
    if source.parameters is not None:
        return _rough_arch(source.parameters)
    fields: dict[str, Any] = {}
    name = "custom"
    quant: tuple[str, dict[str, Any], Any] | None = None  # (field, quantization_config, torch_dtype)
    if source.preset:
        key = source.preset.lower()
        if key not in presets():
            raise InvalidWorkload([("spec.model.preset", f"unknown preset {source.preset!r}; "
                                    f"known: {', '.join(sorted(presets()))}")])
        entry = dict(presets()[key])
        checkpoint = {k: entry.pop(k) for k in _CHECKPOINT_KEYS if k in entry}
        config_fields = {field: entry.pop(key) for key, field in _CONFIG_KEYS.items() if key in entry}
        fields.update(Architecture.model_validate(entry).model_dump(exclude_none=True))
        fields.update(config_fields)
        name = key
        if "quantizationConfig" in checkpoint:
            quant = ("spec.model.preset", checkpoint["quantizationConfig"], checkpoint.get("torchDtype"))
    if source.hugging_face_config is not None:
        if hf_config is None:
            raise InvalidWorkload([("spec.model.huggingFaceConfig", "the config.json could not be read")])
        fields.update(architecture_from_hf_config(hf_config).model_dump(exclude_none=True))
        if positions := rope_cache_positions_from_hf_config(hf_config):
            fields["rope_cache_positions"] = positions
        if positions := layer_rope_cache_positions_from_hf_config(hf_config):
            fields["layer_rope_cache_positions"] = positions
        name = str(hf_config.get("_name_or_path") or hf_config.get("model_type") or "custom")
        if hf_config.get("model_type"):
            fields["model_type"] = str(hf_config["model_type"])
        if longest := sglang_context_from_hf_config(hf_config):
            fields["sglang_max_context"] = longest
        if longest := trtllm_context_from_hf_config(hf_config):
            fields["trtllm_max_context"] = longest
        qc = hf_config.get("quantization_config") or (hf_config.get("text_config") or {}).get("quantization_config")
        if qc:
            dtype = hf_config.get("torch_dtype") or hf_config.get("dtype") \
                or (hf_config.get("text_config") or {}).get("torch_dtype")
            quant = ("spec.model.huggingFaceConfig", qc, dtype)
    if source.architecture is not None:
        given = source.architecture.model_dump(exclude_none=True)
        if "rope_scaling" in given and "max_position_embeddings" not in given \
                and (source.hugging_face_config or "max_position_embeddings" not in fields):
            # a config.json's maximum is vLLM's, already scaled; a bare architecture has none to scale
            raise InvalidWorkload([("spec.model.architecture.ropeScaling", "give maxPositionEmbeddings with it "
                                    "(config.json's max_position_embeddings as it stands), which it scales")])
        if "max_position_embeddings" in given:  # a stated maximum holds for every engine, unless ropeScaling scales it
            fields.pop("sglang_max_context", None)
            fields.pop("trtllm_max_context", None)
        fields.update(given)
    rope = fields.pop("rope_scaling", None)
    if rope is not None and fields.get("max_position_embeddings"):
        # maxPositionEmbeddings as config.json states it: each engine's own derivation from it
        config = context_config(fields["max_position_embeddings"], rope, fields.get("model_type", ""))
        fields["max_position_embeddings"] = max_context_from_hf_config(config)
        fields["sglang_max_context"] = sglang_context_from_hf_config(config)
        fields["trtllm_max_context"] = trtllm_context_from_hf_config(config)
        # Gemma 3's two rotary caches, as from its config.json
        if positions := rope_cache_positions_from_hf_config(config):
            fields["rope_cache_positions"] = positions
    missing = [f for f in _REQUIRED if f not in fields]
    if missing:
        from pydantic.alias_generators import to_camel
        raise InvalidWorkload([(f"spec.model.architecture.{to_camel(f)}", "required without a preset")
                               for f in missing])
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    fields.setdefault("head_dim", fields["hidden_size"] // fields["num_attention_heads"])
    if fields.get("num_experts"):
        fields.setdefault("num_experts_per_token", 2)
        fields.setdefault("moe_intermediate_size", fields["intermediate_size"])
    if fields.get("sliding_window") and "sliding_window_layers" not in fields:
        fields["sliding_window_layers"] = fields["num_layers"]
    if fields.get("attention_chunk_size") and "chunked_attention_layers" not in fields:
        fields["chunked_attention_layers"] = fields["num_layers"]
    arch = ModelArch(name=name, **fields)
    _check(arch)
    if quant is not None:
        where, config, dtype = quant
        if not isinstance(config, dict):
            raise InvalidWorkload([(where, "quantization_config: expected a JSON object")])
        try:
            q = checkpoint_quantization(arch, config, dtype)
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as e:
            raise InvalidWorkload([(where, f"quantization_config: {e}")]) from None
        arch = arch.model_copy(update={"quantization": q})
    return arch


def _check(a: ModelArch) -> None:
    errs = []
    base = "spec.model.architecture."
    if a.num_attention_heads % a.num_key_value_heads:
        errs.append((base + "numKeyValueHeads", f"{a.num_key_value_heads} does not divide "
                     f"numAttentionHeads {a.num_attention_heads}"))
    if a.is_moe and a.num_experts_per_token > a.num_experts:
        errs.append((base + "numExpertsPerToken", f"{a.num_experts_per_token} exceeds numExperts {a.num_experts}"))
    if a.first_dense_layers > a.num_layers:
        errs.append((base + "firstDenseLayers", f"exceeds numLayers {a.num_layers}"))
    if a.sliding_window_layers > a.num_layers:
        errs.append((base + "slidingWindowLayers", f"exceeds numLayers {a.num_layers}"))
    if a.chunked_attention_layers > a.num_layers:
        errs.append((base + "chunkedAttentionLayers", f"exceeds numLayers {a.num_layers}"))
    if a.attention_chunk_size and a.sliding_window:
        # vLLM's FullAttentionSpec.merge: "Model with both sliding window layers and chunked local attention layers
        # is not supported."
        errs.append((base + "attentionChunkSize", "a model has either a sliding window or chunked attention, not both"))
    if a.linear_attention_layers >= a.num_layers and a.linear_attention_layers:
        errs.append((base + "linearAttentionLayers", f"must be below numLayers {a.num_layers}"))
    if errs:
        raise InvalidWorkload(errs)


def _rough_arch(params: int) -> ModelArch:
    """A Llama-shaped stand-in with about `params` parameters, for the rule-of-thumb estimate:
    hidden size from the Llama family's ratio params ~ 12.5 * L * h^2 with L ~ h / 128."""
    h = max(256, int(round((params * 128 / 12.5) ** (1 / 3) / 128)) * 128)
    layers = max(1, round(params / (12.5 * h * h)))
    heads = max(1, h // 128)
    return ModelArch(name=f"{params / 1e9:g}B parameters", num_layers=layers, hidden_size=h,
                     intermediate_size=int(3.5 * h), num_attention_heads=heads,
                     num_key_value_heads=max(1, min(8, heads)), head_dim=128, vocab_size=128256,
                     declared_parameters=params)
