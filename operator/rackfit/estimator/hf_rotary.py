"""The rotary cos/sin tables older Hugging Face transformers releases keep in every attention layer.

Read in the transformers wheels 4.31.0, 4.34.0, 4.36.0, 4.38.0-4.38.2, 4.39.3, 4.40.0-4.48.0 (Mixtral), 4.40.0-4.45.0
and 4.48.0 (the others):

- Llama (models/llama/modeling_llama.py): each LlamaAttention builds its own LlamaRotaryEmbedding (`_init_rope`),
  whose `__init__` calls `_set_cos_sin_cache(seq_len=max_position_embeddings, dtype=torch.get_default_dtype())`:
  `register_buffer("cos_cached", ..., persistent=False)` and "sin_cached", max_position_embeddings x head_dim
  each (4.31-4.35 as [1, 1, positions, dim]), to 4.37. 4.38.0 and 4.38.1 compute cos and sin in each forward from
  inv_freq and register no table; 4.38.2 to 4.40 register them again "For BC" (`_cos_cached`, `_sin_cached`, unused
  by the attention); 4.41 drops them.
- Mistral (models/mistral/modeling_mistral.py MistralRotaryEmbedding, per MistralAttention): the tables from 4.34
  (the model's first release) to 4.41; none from 4.42.
- Qwen2 (models/qwen2/modeling_qwen2.py Qwen2RotaryEmbedding, per Qwen2Attention): the tables from 4.37 (the
  model's first release) to 4.44; 4.45 builds one Qwen2RotaryEmbedding(config) on Qwen2Model that computes cos and
  sin per forward (`position_embeddings = self.rotary_emb(hidden_states, position_ids)`).
- Mixtral (models/mixtral/modeling_mixtral.py MixtralRotaryEmbedding, per MixtralAttention): the tables from 4.36
  (the model's first release) to 4.47; none in 4.48.
- Gemma (4.38 on) and Phi-3 (4.41 on) never register the tables (GemmaRotaryEmbedding and Phi3RotaryEmbedding keep
  only inv_freq); from 4.48 every one of these families builds one model-level rotary embedding.

get_default_dtype() is the dtype from_pretrained builds the model in (its torch_dtype), and the engine's
`module.half()`/`bfloat16()` casts the buffers with the weights. Buffers are not parameters: ZeRO-3 partitions and
FSDP shards only parameters, so each GPU keeps every layer's tables whole. The per-forward cos and sin
([batch, sequence, head_dim], two a layer or one pair a model) are activations of a few MiB and are not counted here.
"""

from __future__ import annotations

from rackfit.models import ModelArch
from rackfit.spec import Training

# config.json model_type -> the releases whose attention layers each hold the tables: [first, end) ranges
HF_ROTARY_TABLE_RELEASES: dict[str, tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]] = {
    "llama": (((0,), (4, 38)), ((4, 38, 2), (4, 41))),
    "mistral": (((0,), (4, 42)),),
    "qwen2": (((0,), (4, 45)),),
    "mixtral": (((0,), (4, 48)),),
    "gemma": (),
    "phi3": (),
}
# the first release in which none of the families read above keeps the tables: a model whose family the spec cannot
# name (a bare architecture, another model_type) is counted with them before it, the larger count
HF_ROTARY_TABLES_GONE = (4, 48)


def hf_rotary_table_bytes(a: ModelArch, tr: Training, precision: str, pipeline: int = 1) -> int:
    """The cos and sin tables (max_position_embeddings x head_dim each) every attention layer on this GPU keeps under
    training.transformersVersion; 0 for current releases (unset) and where the spec gives no max_position_embeddings.
    Their dtype is the model's as built: fp32 for an fp32 model or a full fine-tune with fp32 masters (the Trainer's
    AMP and FSDP keep an fp32 model), except under DeepSpeed, whose engine casts the module, buffers with it, to 16
    bits; else 16-bit."""
    release = tr.transformers_release
    if release is None or not a.max_position_embeddings:
        return 0
    ranges = HF_ROTARY_TABLE_RELEASES.get(a.model_type)
    held = (release < HF_ROTARY_TABLES_GONE if ranges is None
            else any(first <= release < end for first, end in ranges))
    if not held:
        return 0
    fp32 = precision == "fp32" or (tr.method == "full" and tr.master_weights == "fp32" and tr.framework != "deepspeed")
    layers = -(-a.num_layers // pipeline)
    return layers * 2 * a.max_position_embeddings * a.head_dim * (4 if fp32 else 2)
