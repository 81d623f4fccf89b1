"""Which model: a preset, an architecture, a Hugging Face config.json or a bare parameter count."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from rackfit.spec.base import Positive, SpecModel
from rackfit.spec.rules import RULES
from rackfit.units import parse_count


class RopeScaling(SpecModel):
    """config.json's rope_scaling, as the engines read it to derive a model's longest context."""

    type: str = Field(min_length=1, description=(
        "rope_scaling's rope_type (or type): linear, dynamic, yarn, llama3, longrope, su, default, ..."))
    factor: float = Field(1.0, gt=0, description="rope_scaling's factor (default 1: none)")
    original_max_position_embeddings: int | None = Field(None, gt=0, description=(
        "rope_scaling's original_max_position_embeddings, where it names one: vLLM scales it (yarn), SGLang scales "
        "nothing when it is there"))


class Architecture(SpecModel):
    """Transformer shape, as in a Hugging Face config.json. Every field is optional here:
    given with a preset, they override it; alone, the dense core (layers, sizes, heads, vocab) is required."""

    num_layers: int | None = Positive
    hidden_size: int | None = Positive
    intermediate_size: int | None = Positive
    num_attention_heads: int | None = Positive
    num_key_value_heads: int | None = Positive
    head_dim: int | None = Positive
    vocab_size: int | None = Positive
    tie_word_embeddings: bool | None = None
    attention_bias: bool | None = Field(None, description="bias on q, k, v (Qwen2)")
    gated_mlp: bool | None = Field(None, description="SwiGLU/GeGLU (3 matrices) rather than 2 (GELU, squared ReLU)")
    # MoE
    num_experts: int | None = Field(None, ge=0)
    num_experts_per_token: int | None = Positive
    moe_intermediate_size: int | None = Positive
    num_shared_experts: int | None = Field(None, ge=0)
    first_dense_layers: int | None = Field(None, ge=0)
    # MLA (DeepSeek-V2/V3)
    kv_lora_rank: int | None = Positive
    q_lora_rank: int | None = Positive
    qk_rope_head_dim: int | None = Positive
    qk_nope_head_dim: int | None = Positive
    v_head_dim: int | None = Positive
    qk_norm: bool | None = Field(None, description=(
        "the attention normalises each head's queries and keys (an RMSNorm over head_dim before rope: Qwen3, "
        "Qwen3-MoE, Gemma 3; over the whole projection: OLMo 2; Megatron's --qk-layernorm). Training keeps each "
        "norm's input for the backward, a query- and key-sized activation more a layer. Read from a "
        "huggingFaceConfig's model_type; set by the qwen3-* presets"))
    # sliding-window attention (Gemma-2, gpt-oss, Mistral v0.1)
    sliding_window: int | None = Positive
    sliding_window_layers: int | None = Field(None, ge=0)
    # chunked local attention (Llama 4)
    attention_chunk_size: int | None = Field(None, ge=1, description=(
        "chunked local attention (Llama 4's attention_chunk_size): a chunked layer attends within blocks of this "
        "many tokens, so vLLM's hybrid KV cache manager (ChunkedLocalAttentionSpec) keeps a request's "
        "min(attentionChunkSize + max_num_batched_tokens, contextLength) tokens there, not the whole context; "
        "see inference.chunkedLocalAttentionHybrid. Read from a huggingFaceConfig"))
    chunked_attention_layers: int | None = Field(None, ge=0, description=(
        "how many layers use chunked local attention (Llama 4: the layers with rope, no_rope_layers 1; Scout 36 of "
        "48); the rest attend to the whole context. Default: every layer when attentionChunkSize is set"))
    vision_parameters: int | None = Field(None, ge=0, description=(
        "parameters of a multimodal checkpoint's vision encoder and its projector to the language model, stored in "
        "the checkpoint's 16-bit dtype whatever the text layers' quantization (bitsandbytes' and unsloth's skip "
        "lists, AWQ/GPTQ/compressed-tensors ignore lists leave it unconverted), split over tensor parallel, on the "
        "first pipeline stage. Read from a huggingFaceConfig's vision_config; 0 for text-only models"))
    vision_hidden_size: int | None = Field(None, ge=0, description=(
        "width of the vision encoder's transformer (vision_config embed_dim or hidden_size): with "
        "visionPatchesPerItem it sizes what vLLM's profile run spends on the encoder's forward. Read from a "
        "huggingFaceConfig's vision_config; 0 or unset for text-only models (no encoder profile)"))
    vision_intermediate_size: int | None = Field(None, ge=0, description=(
        "the vision encoder's MLP width (vision_config intermediate_size; else mlp_ratio x visionHiddenSize)"))
    vision_gated_mlp: bool | None = Field(None, description=(
        "the vision encoder's MLP is gated (SwiGLU, 3 matrices: Qwen2.5-VL's silu) rather than 2 (GELU: CLIP, "
        "SigLIP, Qwen2-VL)"))
    vision_patches_per_item: int | None = Field(None, ge=0, description=(
        "patches the vision encoder runs over for one image of the largest size the processor accepts (its sequence "
        "length): Qwen2-VL/Qwen2.5-VL max_pixels / patch_size^2 (65536 at the processor's default max_pixels "
        "12845056), SigLIP/CLIP (image_size / patch_size)^2. 0 or unset: no encoder profile"))
    vision_tokens_per_item: int | None = Field(None, ge=0, description=(
        "the language-model tokens (encoder output rows, each of hiddenSize) one such largest image becomes: vLLM's "
        "max tokens per multimodal item (Qwen2.5-VL 16384 at default max_pixels, Gemma 3 mm_tokens_per_image 256, "
        "LLaVA-1.5 576). It sets the encoder cache's budget and how many images vLLM's profile run encodes; counted "
        "with visionHiddenSize and visionPatchesPerItem, all three set. 0 or unset for text-only models, or to model "
        "--limit-mm-per-prompt image=0 (no encoder profile)"))
    vision_output_width: int | None = Field(None, ge=0, description=(
        "width of one vision encoder output row that vLLM keeps in its encoder cache, when it is not hiddenSize: "
        "Qwen3-VL concatenates its deepstack mergers' outputs to the last one's (out_hidden_size x (1 + "
        "len(deepstack_visual_indexes)), 4 x hiddenSize). Read from a huggingFaceConfig's vision_config; 0 or "
        "unset: hiddenSize"))
    vision_num_hidden_layers: int | None = Field(None, ge=0, description=(
        "the vision_config's num_hidden_layers where the config names its ViT depth so (SigLIP, CLIP, InternViT); "
        "unset where it names it depth (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). SGLang's default mem_fraction_static for a "
        "multimodal model shrinks with num_hidden_layers x visionHiddenSize^2, taking 24 layers when the config has no "
        "num_hidden_layers (server_args.py adjust_mem_fraction_for_vlm). Read from a huggingFaceConfig's "
        "vision_config"))
    # linear-attention / state-space layers of a hybrid model (estimator/linear_attention.py)
    linear_attention_layers: int | None = Field(None, ge=0, description=(
        "layers of numLayers that keep a fixed-size recurrent state per request instead of a KV cache: Qwen3-Next's "
        "and Qwen3.5's Gated DeltaNet layers (config.json layer_types 'linear_attention', or all but every "
        "full_attention_interval-th), a Mamba hybrid's mamba layers (Granite 4.0-H layer_types 'mamba', Jamba, "
        "Bamba). 0 or unset: every layer is attention. The state's shape is the five linear* fields below"))
    linear_num_key_heads: int | None = Field(None, ge=0, description=(
        "key heads of a linear-attention layer (linear_num_key_heads); for a Mamba-2 layer its groups (n_groups, "
        "replicated on every tensor rank when fewer than the ranks), for Mamba-1 0"))
    linear_num_value_heads: int | None = Field(None, ge=0, description=(
        "value heads of a linear-attention layer (linear_num_value_heads); for a Mamba-2 layer its heads "
        "(mamba_n_heads), for Mamba-1 its inner width (mamba_expand x hiddenSize)"))
    linear_key_head_dim: int | None = Field(None, ge=0, description=(
        "key head width of a linear-attention layer (linear_key_head_dim); for a Mamba layer its state size "
        "(mamba_d_state / ssm_state_size)"))
    linear_value_head_dim: int | None = Field(None, ge=0, description=(
        "value head width of a linear-attention layer (linear_value_head_dim); for a Mamba-2 layer its head width "
        "(mamba_head_dim), for Mamba-1 1"))
    linear_conv_kernel_dim: int | None = Field(None, ge=0, description=(
        "the short convolution's kernel (linear_conv_kernel_dim, mamba_d_conv, conv_kernel): vLLM keeps its last "
        "kernel - 1 inputs per request"))
    attention_output_gate: bool | None = Field(None, description=(
        "the full-attention layers gate their output with a second query-sized projection (Qwen3-Next, Qwen3.5: "
        "config.json attn_output_gate), doubling q_proj's width; counted in the weights"))
    linear_state_float32: bool | None = Field(None, description=(
        "the recurrent (ssm) state is kept in float32, not the model's dtype: vLLM's mamba_ssm_cache_dtype as "
        "config.json's mamba_ssm_dtype sets it (Qwen3.5) or NemotronH's float32 default"))
    index_head_dim: int | None = Field(None, ge=0, description=(
        "the lightning indexer of DeepSeek-V3.2's sparse attention (config.json index_head_dim, with index_topk): "
        "its key width, cached a token and layer beside the MLA latent (SGLang's NSA pool) and its projections "
        "held whole on every rank; 0 or unset: no indexer"))
    index_num_heads: int | None = Field(None, ge=0, description=(
        "the lightning indexer's query heads (config.json index_n_heads): the width of its wq_b and weights_proj"))
    max_position_embeddings: int | None = Field(None, gt=0, description=(
        "the longest context the model supports, in tokens. Without ropeScaling: that longest context for every "
        "engine (config.json's max_position_embeddings with its rope_scaling applied as vLLM derives max_model_len; "
        "yarn: original_max_position_embeddings x factor). With ropeScaling: config.json's max_position_embeddings as "
        "it stands, which each engine scales as its own source does. An inference contextLength above the engine's "
        "longest is refused where the engine refuses it"))
    model_type: str | None = Field(None, min_length=1, description=(
        "config.json's model_type (gemma3, llama, qwen2, ...): vLLM leaves a gemma3 model's rope_scaling out of its "
        "longest context, and transformers' model code for training.transformersVersion is chosen by it. Read from "
        "a huggingFaceConfig; set by the presets"))
    rope_scaling: RopeScaling | None = Field(None, description=(
        "config.json's rope_scaling, from which each engine derives the model's longest context from "
        "maxPositionEmbeddings (then config.json's own value): vLLM's _get_and_verify_max_len, SGLang's "
        "get_context_length, TensorRT-LLM's infer_max_seq_len (PyTorch backend); given beside a huggingFaceConfig "
        "or without a preset, maxPositionEmbeddings must be given with it. Unset: maxPositionEmbeddings is that "
        "longest context for every engine"))
    final_logit_softcapping: float | None = Field(None, ge=0, description=(
        "config.json's final_logit_softcapping (Gemma 2: 30.0): transformers' forward computes logits = cap x "
        "tanh(logits / cap) over the whole vocabulary, and tanh keeps its output for the backward, one more "
        "logit-sized tensor through the training loss (framework transformers). 0 or unset: none. Read from a "
        "huggingFaceConfig"))
    swiglu_limit: float | None = Field(None, gt=0, description=(
        "config.json's swiglu_limit (gpt-oss: 7.0): the experts' SwiGLU clamps the gate and the linear half to this "
        "limit (torchtitan's gpt_oss swiglu: clamp, sigmoid(1.702 x), product, addcmul), and eager its autograd "
        "keeps the clamped gate, the sigmoid, the gated output and the clamped linear half beside the fused "
        "gate/up output: three expert-width tensors a routed copy more than a plain SwiGLU (framework fsdp, "
        "torchtitan's model code, not compiled). Unset: a plain SwiGLU. Read from a huggingFaceConfig; set by the "
        "gpt-oss presets"))


class ModelSource(SpecModel):
    """Exactly one way to say which model: a preset (optionally overridden), an architecture,
    a Hugging Face config.json, or a bare parameter count for the rule-of-thumb estimate."""

    preset: str | None = None
    architecture: Architecture | None = None
    hugging_face_config: str | None = Field(
        None, description="CLI: path to a config.json; operator: name of a ConfigMap key `config.json`"
    )
    parameters: int | None = Field(None, gt=0, description="bare parameter count, e.g. 70e9 or '70B'")

    @field_validator("parameters", mode="before")
    @classmethod
    def _count(cls, v: Any) -> Any:
        return None if v is None else parse_count(v)

    @property
    def label(self) -> str:
        """What `kubectl get llmw` shows in its MODEL column."""
        if self.preset:
            return self.preset + (" (modified)" if self.architecture else "")
        if self.hugging_face_config:
            return f"config.json from {self.hugging_face_config}"
        if self.parameters:
            return f"{self.parameters / 1e9:g}B parameters"
        a = self.architecture
        return f"custom ({a.num_layers} layers x {a.hidden_size})" if a else "custom"

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if self.parameters is not None and (self.preset or self.architecture or self.hugging_face_config):
            raise ValueError(RULES["ModelSource"]["parameters_alone"].message)
        if self.preset and self.hugging_face_config:
            raise ValueError(RULES["ModelSource"]["preset_or_config"].message)
        if not (self.preset or self.architecture or self.hugging_face_config or self.parameters):
            raise ValueError(RULES["ModelSource"]["one_source"].message)
        return self
