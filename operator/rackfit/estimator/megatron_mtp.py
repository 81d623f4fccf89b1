"""Megatron-Core's multi-token prediction (`training.mtpNumLayers`, --mtp-num-layers): what it keeps on the last stage.

Read at NVIDIA/Megatron-LM d98e8a6 (August 2026), megatron/core/transformer/multi_token_prediction.py and
megatron/core/models/gpt/gpt_model.py. Without a custom pipeline layout, `mtp_on_this_rank` puts every MTP layer on
the last pipeline stage (the last virtual chunk under the interleaved schedule, `get_mtp_num_layers_to_build`).
- Parameters: each MultiTokenPredictionLayer builds `enorm` and `hnorm` (norms of the hidden size), `eh_proj` (a
  column-parallel linear from 2h to h), `mtp_model_layer` of the decoder's LAST layer spec (gpt_layer_specs.py
  get_gpt_mtp_block_spec: `spec.layer_specs[-1]`, so a MoE layer in a MoE model) and `final_layernorm`. GPTModel builds
  `self.embedding` where `self.pre_process or self.mtp_process`, and its output layer allocates its own weight unless
  `pre_process` (`skip_weight_param_allocation=self.pre_process and ...share_embeddings...`): under pipeline parallel
  the last stage holds a word-embedding matrix beside the output one, tied or not.
- Activations, one micro-batch (the last chunk holds one at the last stage's first backward, as the last stage of
  1F1B does): `_concat_embeddings` norms the embedded input and the hidden states (Transformer Engine's RMSNorm
  saves each input) and concatenates them (2h) into eh_proj, which saves it; the model layer keeps what a decoder layer
  keeps; `_postprocess`'s final_layernorm saves its input, which the output layer saves too: 6h 16-bit values a token
  beside the layer, split over tensor under sequence parallel. Under --recompute-granularity full
  (`_checkpointed_forward`) only the two inputs (2h) stay. `process_mtp_loss` then runs the output layer and
  `compute_language_model_loss` on each MTP layer's hidden states inside the forward; the vocabulary-parallel
  cross-entropy (megatron/core/tensor_parallel/cross_entropy.py and fusions/fused_cross_entropy.py,
  `ctx.save_for_backward(exp_logits, ...)`) keeps the fp32 softmax, 4 bytes a logit, until MTPLossAutoScaler's
  backward, after the main loss's: held through the main loss's forward and backward. The 16-bit MTP logits are
  not saved (the output layer saves its input).
"""

from __future__ import annotations

from rackfit.estimator.activations import ACT_BYTES
from rackfit.estimator.params import attention_params, mlp_params
from rackfit.models import ModelArch
from rackfit.spec import Training

# fp32 exp_logits saved by Megatron's vocabulary-parallel cross-entropy for the MTP loss's backward
MTP_SAVED_SOFTMAX_BYTES = 4
# 16-bit values a token the MTP layer keeps beside its model layer: enorm's and hnorm's inputs (h each), eh_proj's
# concatenated input (2h), final_layernorm's input and its output that the output layer saves (h each)
MTP_EXTRA_WIDTHS = 6
# under full recompute, the checkpointed MTP forward's two inputs (hidden states and embedded input)
MTP_CHECKPOINT_WIDTHS = 2


def layers(tr: Training) -> int:
    """MTP layers of a Megatron run (0 elsewhere or without --mtp-num-layers)."""
    return (tr.mtp_num_layers or 0) if tr.framework == "megatron" else 0


def layer_params(a: ModelArch) -> tuple[int, int]:
    """(parameters outside the routed experts, routed-expert parameters) of one MTP layer, before any split: the
    decoder's last layer (a MoE layer in a MoE model: attention, router, shared and routed experts; else attention and
    the dense MLP), its two norms, the MTP's three norms and eh_proj (2h x h)."""
    h = a.hidden_size
    dense = attention_params(a) + 2 * h + (2 * a.head_dim if a.qk_norm else 0) + 3 * h + 2 * h * h
    if a.is_moe:
        expert = mlp_params(h, a.moe_intermediate_size, a.gated_mlp)
        return dense + a.num_shared_experts * expert + a.num_experts * h, a.num_experts * expert
    return dense + mlp_params(h, a.intermediate_size, a.gated_mlp), 0


def stage_params(a: ModelArch, tr: Training, pipeline: int) -> tuple[int, int]:
    """(parameters outside the routed experts, routed-expert parameters) the MTP block adds to the last stage, before
    the tensor and expert splits: its layers and, under pipeline parallel, the word embedding GPTModel builds there
    (the first stage's own; with one stage it is already counted). (0, 0) without MTP."""
    n = layers(tr)
    if not n:
        return 0, 0
    dense, experts = layer_params(a)
    return n * dense + (a.vocab_size * a.hidden_size if pipeline > 1 else 0), n * experts


def kept_bytes_per_token(a: ModelArch, tr: Training, t: int, sp: bool, layer_kept: float) -> float:
    """Bytes a token of the last stage's micro-batch the MTP block keeps until its backward: per MTP layer, what a
    decoder layer keeps (`layer_kept`, megatron_layer_bytes or its checkpointed input) and the MTP's own norms and
    projection input (MTP_EXTRA_WIDTHS; the checkpointed inputs under full recompute), split over `t` under sequence
    parallel, and the MTP loss's fp32 softmax over this rank's vocabulary share. 0 without MTP."""
    n = layers(tr)
    if not n:
        return 0.0
    split = t if sp else 1
    if tr.activation_checkpointing == "full":
        layer = ACT_BYTES * MTP_CHECKPOINT_WIDTHS * a.hidden_size / split
    else:
        layer = layer_kept + ACT_BYTES * MTP_EXTRA_WIDTHS * a.hidden_size / split
    return n * (layer + MTP_SAVED_SOFTMAX_BYTES * a.vocab_size / t)
