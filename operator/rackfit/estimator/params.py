"""Parameter counts from an architecture, split by what quantisation and sharding treat differently."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from rackfit.estimator.linear_attention import linear_layer_params
from rackfit.models import ModelArch


@dataclass(frozen=True)
class ParamCounts:
    embedding: int      # input embedding (16-bit in quantised checkpoints)
    lm_head: int        # output projection; 0 when tied to the embedding
    attention: int      # all layers' attention projections (+ biases)
    dense_mlp: int      # MLPs of dense layers
    experts: int        # routed experts of all MoE layers (all resident)
    shared: int         # shared experts + routers of MoE layers
    norms: int
    active_experts: int  # routed-expert parameters one token touches, all layers
    vision: int = 0     # a multimodal checkpoint's vision tower and projector (16-bit in quantised checkpoints)

    @property
    def total(self) -> int:
        return (self.embedding + self.lm_head + self.attention + self.dense_mlp + self.experts
                + self.shared + self.norms + self.vision)

    @property
    def linear(self) -> int:
        """Parameters in decoder-layer matrices: what weight quantisation compresses."""
        return self.attention + self.dense_mlp + self.experts + self.shared

    @property
    def active(self) -> int:
        return self.total - self.experts + self.active_experts


def attention_params(a: ModelArch) -> int:
    """One layer's attention projections."""
    h, heads = a.hidden_size, a.num_attention_heads
    if a.is_mla:
        qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
        q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * heads * qk_head if a.q_lora_rank \
            else h * heads * qk_head
        kv = h * (a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank \
            + a.kv_lora_rank * heads * (a.qk_nope_head_dim + a.v_head_dim)
        return q + kv + heads * a.v_head_dim * h + indexer_params(a)
    q_dim, kv_dim = a.query_width, a.kv_width
    bias = q_dim + 2 * kv_dim if a.attention_bias else 0
    return h * q_dim + 2 * h * kv_dim + q_dim * h + bias


def indexer_params(a: ModelArch) -> int:
    """One layer's lightning indexer (DeepSeek-V3.2; 0 without one): wq_b (q_lora_rank, or hidden, to heads x
    index_head_dim), wk (hidden to index_head_dim), k_norm (a LayerNorm's weight and bias) and weights_proj (hidden to
    heads): the Indexer of SGLang's layers/attention/nsa/nsa_indexer.py (read in 0.5.3) and vLLM's deepseek_v2.py."""
    if not a.has_indexer:
        return 0
    d, n, h = a.index_head_dim, a.index_num_heads, a.hidden_size
    return (a.q_lora_rank or h) * n * d + h * d + 2 * d + h * n


def lora_projections(a: ModelArch, targets: frozenset[str]) -> list[tuple[int, int]]:
    """(in, out) features of one layer's adapted projections, by role (spec.LORA_TARGETS; no gate without a gated
    MLP). The MLP's width is the dense one, as peft's target names match it."""
    h = a.hidden_size
    q, kv, inter = a.query_width, a.kv_width, a.intermediate_size
    widths = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "gate": (h, inter), "up": (h, inter),
              "down": (inter, h)}
    return [w for role, w in widths.items() if role in targets and (role != "gate" or a.gated_mlp)]


def linear_layer_params_delta(a: ModelArch, attention: int) -> int:
    """What a hybrid model's layers hold beyond L x attention_params (0 unless linear layers or an output gate are
    set; linear_attention.linear_layer_params)."""
    if not a.linear_attention_layers and not a.attention_output_gate:
        return 0
    full = a.num_layers - a.linear_attention_layers
    gate = a.hidden_size * a.query_width if a.attention_output_gate else 0
    return a.linear_attention_layers * (linear_layer_params(a) - attention) + full * gate


def mlp_params(hidden: int, inter: int, gated: bool) -> int:
    return (3 if gated else 2) * hidden * inter


# the architecture count_params answered last, and its counts: compared by identity, held so that its id stays its own
_last_counted: tuple[ModelArch | None, ParamCounts | None] = (None, None)


def count_params(a: ModelArch) -> ParamCounts:
    """`a`'s parameters by what holds them. The last architecture asked about is answered by identity first: a plan
    asks for one architecture's counts some sixty times, and the cache below compares an equal architecture resolved
    anew (each plan resolves its own) field by field, which costs more than the lookup."""
    global _last_counted
    arch, counts = _last_counted
    if arch is not a:
        counts = _count_params(a)
        _last_counted = (a, counts)
    return counts


@lru_cache(maxsize=256)
def _count_params(a: ModelArch) -> ParamCounts:
    h, L = a.hidden_size, a.num_layers
    dense_layers = L - a.moe_layers
    expert = mlp_params(h, a.moe_intermediate_size, a.gated_mlp)
    counts = ParamCounts(
        embedding=a.vocab_size * h,
        lm_head=0 if a.tie_word_embeddings else a.vocab_size * h,
        attention=L * attention_params(a) + linear_layer_params_delta(a, attention_params(a)),
        dense_mlp=dense_layers * mlp_params(h, a.intermediate_size, a.gated_mlp),
        experts=a.moe_layers * a.num_experts * expert,
        shared=a.moe_layers * (a.num_shared_experts * expert + a.num_experts * h),
        # + q_norm and k_norm of head_dim each a layer (transformers' Qwen3Attention, Gemma3Attention)
        norms=(2 * L + 1) * h + (2 * L * a.head_dim if a.qk_norm else 0),
        active_experts=a.moe_layers * a.num_experts_per_token * expert,
        vision=a.vision_parameters,
    )
    if a.rough:  # only the total is known: scale every part to it
        scale = a.declared_parameters / counts.total
        counts = ParamCounts(**{k: int(v * scale) for k, v in counts.__dict__.items()})
    return counts
