"""FSDP2 running Hugging Face transformers' model code (`training.modelCode: transformers` with framework fsdp and
fsdpVersion 2): accelerate's FSDP plugin with fsdp_version 2, HF Trainer / TRL with --fsdp and fsdp_version 2, and
transformers' own tensor-parallel `tp_plan` beside FSDP2. FSDP2's own memory (shards, gathered blocks, the copy-in
pool, the backward moment by moment) is the same as torchtitan's; what differs is the model code, read in
transformers' models/llama/modeling_llama.py (4.48-4.57) and accelerate's utils/fsdp_utils.py (1.6-1.10):
- the norms: LlamaRMSNorm is eager (`hidden_states.to(torch.float32)`, `pow(2).mean`, `* torch.rsqrt(...)`,
  `self.weight * hidden_states.to(input_dtype)`): the fp32 upcast (4 bytes a hidden element) and the 16-bit normalised
  copy (2) are saved, and the 16-bit output (2) is what the next matmuls save: activations.NORM_BYTES_PER_H for a
  block's two norms, as the FSDP1 path counts them (framework_activations.torchtitan is false for this code);
- the final norm, outside the decoder layers (LlamaModel.norm), whose 8 bytes a hidden element of the whole sequence
  live through the loss (lm_head saves its output), on every tensor rank;
- the loss: ForCausalLMLoss (transformers/loss/loss_utils.py, `logits.float()` then cross_entropy; before 4.49.0 the
  shifted fp32 copy: training.transformersVersion), the logits whole on every tensor rank (`lm_head` is
  "colwise_rep" in LlamaForCausalLM._tp_plan: its output is gathered, Replicate; no loss parallel);
- tensor parallel: LlamaConfig.base_model_tp_plan makes q_proj, k_proj, v_proj, gate_proj, up_proj "colwise" and
  o_proj, down_proj "rowwise" (all-reduced output, Replicate), and names no norm and no "sequence_parallel" entry: the
  norms, the residual and each block's input are whole on every rank (sequence_parallel false by default);
- the root group: accelerate's fsdp2_prepare_model applies fully_shard to each module its auto-wrap policy matches
  (`fsdp_transformer_layer_cls_to_wrap`, the decoder layers), then `fully_shard(model)`: one root group of
  embed_tokens, norm and lm_head, which torch does not reshard after the forward (spec.Training.torchtitan_root_group,
  as torchtitan before 0.2);
- checkpointing: accelerate's `fsdp_activation_checkpointing` wraps each decoder layer in torch's checkpoint_wrapper
  up to 1.7.0 (fsdp2_prepare_model: `apply_activation_checkpointing` with the auto-wrap policy) and from 1.15.0
  (fsdp2_apply_ac: `if auto_wrap_policy_func(layer)`, PR 4172); HF Trainer's `gradient_checkpointing` calls
  `gradient_checkpointing_enable` (modeling_utils.py: `use_reentrant` True unless gradient_checkpointing_kwargs say
  otherwise). Either keeps each layer's input and recomputes one layer in the backward for a full fine-tune.
  accelerate 1.8.0-1.14.x wrap each child of the layer instead (child_checkpoint); FSDP1's held input gradients of
  frozen LoRA units (framework_activations.fsdp1_held_input_grads) come from FSDP1's
  `_register_post_backward_reshard_only_hook`, which FSDP2 does not have. Not modelled here: accelerate's `no_sync`
  under gradient accumulation.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

from rackfit.estimator.activations import ACT_BYTES, COMPILED_NORM_BYTES_PER_H, NORM_BYTES_PER_H
from rackfit.models import ModelArch
from rackfit.spec import Training
from rackfit.spec.base import older
from rackfit.spec.releases import ACCELERATE_FSDP2_CHILD_CHECKPOINT, ACCELERATE_FSDP2_LAYER_CHECKPOINT

# transformers' eager LlamaRMSNorm, one norm: the saved fp32 upcast (4), the saved 16-bit normalised copy the weight's
# gradient needs (2) and its 16-bit output, saved by the next matmul (2): NORM_BYTES_PER_H / 2
HF_NORM_BYTES_PER_H = NORM_BYTES_PER_H // 2


def hf_fsdp2(tr: Training) -> bool:
    """framework fsdp, FSDP2, transformers' model code (`modelCode: transformers`)."""
    return tr.framework == "fsdp" and tr.fsdp == 2 and tr.hf_model_code


def liger(tr: Training) -> bool:
    """transformers' model code under FSDP2 with Liger's kernels patched in (`ligerKernel`): a layer keeps what
    activations.liger_savings leaves (LigerRMSNorm's input and rstd, LigerSiLUMulFunction's gate and up; in a full
    fine-tune what torch.compile leaves of the eager code, QK-norms aside), and the final norm, patched by the same
    _patch_rms_norm_module(base_model.norm), keeps its 16-bit input and its output."""
    return hf_fsdp2(tr) and bool(tr.liger_kernel)


def whole_quantized_load(tr: Training, precision: str, data: int) -> bool:
    """accelerate's FSDP2 over `data` > 1 loading a bitsandbytes base without fsdp_cpu_ram_efficient_loading
    (spec.Training.cpu_ram_efficient_loading): transformers' bitsandbytes quantizers (quantizers/quantizer_bnb_4bit.py
    and quantizer_bnb_8bit.py, update_device_map) set device_map {'': torch.cuda.current_device()} when none is given,
    so each rank loads and quantizes the whole model on its GPU, and accelerate's fsdp2_prepare_model (utils/
    fsdp_utils.py, 1.6.0 on; axolotl's monkeypatch/accelerate/fsdp2.py copy, 753906cfc) holds `original_sd =
    model.state_dict()` from before the first fully_shard until it returns: the whole quantized model and this
    rank's new shards are allocated at once."""
    return hf_fsdp2(tr) and tr.method != "full" and precision in ("nf4", "int8") and data > 1 and \
        not tr.cpu_ram_efficient_loading


def sharded_lora(tr: Training, data: int, pipeline: int) -> bool:
    """LoRA/QLoRA under accelerate's FSDP2 (hf_fsdp2) over `data` > 1 without pipeline stages. accelerate's
    fsdp2_prepare_model (utils/fsdp_utils.py, 1.6.0-1.13.x) walks `get_module_children_bottom_up(model)[:-1]`,
    applying fully_shard to each module its auto-wrap policy matches (TRANSFORMER_BASED_WRAP: the decoder layers,
    `_no_split_modules`), then `fully_shard(model)`: a root group of the embeddings, final norm and lm_head, the peft
    adapters in their layer's group. Those are the groups torchtune's lora_finetune_distributed makes, on the same
    torch FSDP2, so the backward holds what torchtune.distributed_gathered counts: the root, never resharded after the
    forward, and the copy-in stream's pool of the root's and the first layer's all-gather outputs, with no layer
    gathered at the loss's backward (reshard_after_forward, accelerate's `fsdp_reshard_after_forward`, true by
    default). As the full fine-tune's root group (spec.Training.torchtitan_root_group), this is accelerate before
    1.14.0, whose PR 4015 shards the embeddings and [norm, lm_head] as their own units. Not counted: accelerate
    1.6.0-1.12.x's `model.to(torch.float32)` after sharding when mixed precision is on (a base stored in fp32). The
    spec cannot say the accelerate release (docs/accuracy.md, T340)."""
    return hf_fsdp2(tr) and tr.method in ("lora", "qlora") and data > 1 and pipeline == 1


def whole_norm_bytes(a: ModelArch, tr: Training, t: int) -> float:
    """Bytes a token and layer that transformers' tp_plan keeps beyond the per-token count's t-th share of the norms
    (activations._layer_bytes_per_token divides every term by t): without sequence parallel (tp_plan names no norm)
    both norms' saved tensors are the whole sequence on every rank, (1 - 1/t) of them more. Eager: the upcast, the
    normalised copy and the output (NORM_BYTES_PER_H, 16 bytes a hidden element); compiled, the 16-bit input and
    output (COMPILED_NORM_BYTES_PER_H, activations.compile_savings). 0 on one tensor rank or with sequence parallel."""
    from rackfit.estimator.framework_activations import sequence_parallel

    if t == 1 or sequence_parallel(tr, t):
        return 0.0
    per_h = COMPILED_NORM_BYTES_PER_H if tr.compile or liger(tr) else NORM_BYTES_PER_H
    return per_h * a.hidden_size * (1 - 1 / t)


def final_norm_bytes(a: ModelArch, tr: Training) -> int:
    """Bytes transformers' final norm (LlamaModel.norm, outside every checkpointed layer) keeps through the loss, the
    whole sequence on every rank: its fp32 upcast, normalised copy and output (8 bytes a hidden element), or compiled
    its 16-bit input and output (4), as LigerRMSNorm keeps (`ligerKernel`, liger)."""
    per_h = COMPILED_NORM_BYTES_PER_H // 2 if tr.compile or liger(tr) else HF_NORM_BYTES_PER_H
    return tr.micro_batch_size * tr.sequence_length * a.hidden_size * per_h


def final_norm_beyond_output(a: ModelArch, tr: Training) -> int:
    """Of final_norm_bytes, what FSDP2's output backward holds beyond the norm's 16-bit output that
    fsdp.fsdp2_backward_inputs counts as `final`."""
    return final_norm_bytes(a, tr) - tr.micro_batch_size * tr.sequence_length * a.hidden_size * ACT_BYTES


# the inputs of a pre-norm decoder layer's checkpointed children beyond the layer's own input (which the first
# norm's checkpoint keeps): the first norm's output (self_attn's input), the residual sum after the attention
# (post_attention_layernorm's input) and the second norm's output (mlp's input), each 16-bit and hidden-wide
CHILD_INPUTS_BEYOND_LAYER_INPUT = 3


def child_checkpoint(tr: Training) -> bool:
    """accelerate 1.8.0-1.14.x checkpointing each child of a decoder layer (`fsdpActivationCheckpointing` under full
    checkpointing, spec.releases.ACCELERATE_FSDP2_CHILD_CHECKPOINT). fsdp2_apply_ac (utils/fsdp_utils.py, v1.8.0 to
    v1.14.0) walks get_module_children_bottom_up(model) and wraps a module when `auto_wrap_policy_func(parent_module)`:
    the policy matches the decoder layer (TRANSFORMER_BASED_WRAP, `_no_split_modules`), so LlamaDecoderLayer's (and
    Qwen2's, Qwen3's, Mistral's) input_layernorm, self_attn, post_attention_layernorm and mlp each run in their own
    non-reentrant torch checkpoint. Unset, the release is a current one (1.15.0 on, the layer wrapped again)."""
    return hf_fsdp2(tr) and tr.activation_checkpointing == "full" and bool(tr.fsdp_activation_checkpointing) and \
        not older(tr.accelerate_version, ACCELERATE_FSDP2_CHILD_CHECKPOINT) and \
        older(tr.accelerate_version, ACCELERATE_FSDP2_LAYER_CHECKPOINT)


def child_checkpoint_bytes(a: ModelArch) -> int:
    """Bytes a token and layer that child_checkpoint keeps beyond the layer's input. torch's non-reentrant checkpoint
    (torch/utils/checkpoint.py, _checkpoint_without_reentrant_generator) saves each region's inputs with
    `_NoopSaveInputs.apply(dummy, kwargs, *args)` before it enters its own saved-tensor hooks, so every child's input
    is held to the backward: in LlamaDecoderLayer.forward (`residual = hidden_states`, `self.input_layernorm`,
    `self.self_attn`, `hidden_states = residual + hidden_states`, `self.post_attention_layernorm`, `self.mlp`, `residual
    + hidden_states`) those are the layer's input, the first norm's output, the residual sum and the second norm's
    output; the residual adds between them save nothing, and the attention's and MLP's outputs are freed at the adds.
    Each is whole on every tensor rank (tp_plan replicates the norms and the residual stream)."""
    return CHILD_INPUTS_BEYOND_LAYER_INPUT * ACT_BYTES * a.hidden_size
