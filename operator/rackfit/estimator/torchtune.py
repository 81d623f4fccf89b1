"""torchtune's single-device LoRA/QLoRA recipe, as distinct from its FSDP2 recipe (docs/accuracy.md, "torchtune's
LoRA and QLoRA on one GPU: no FSDP"). frameworks.runtime_peak calls these. Pure: bytes in, bytes out.

A spec with framework fsdp, method lora or qlora, FSDP2 with torchtune's model code and one GPU (data, tensor and
pipeline 1) is torchtune's `lora_finetune_single_device`: torchtune ships it for one device and its
`lora_finetune_distributed` for several (README "Finetuning recipes", 30b8519e8: LoRA "1-8" devices, single-device
and distributed recipes). The single-device recipe builds the model on the GPU in the recipe's dtype
(recipes/lora_finetune_single_device.py `_setup_model`: `with training.set_default_dtype(self._dtype),
self._device: model = config.instantiate(cfg_model)`, at 30b8519e8 and 1814feb17) and never calls fully_shard:
no parameter is all-gathered into a second 16-bit copy, no root group (embeddings, final norm, output) is held
unsharded beside the stored weights, no all-gather copy-in pool. The weights the layers compute with are the ones
stored. What remains beside them is QLoRA's dequantization: torchao's LinearNF4 (torchao/dtypes/nf4tensor.py,
`linear_nf4` -> LinearNF4.forward `F.linear(input, weight.to(input.dtype))`, backward `grad_output @
weight.to(grad_output.dtype)`) makes one matrix's 16-bit copy at a time and frees it after its matmul, as
torchtune's FrozenNF4Linear (torchtune/modules/low_precision/nf4_linear.py) calls it.
"""

from __future__ import annotations

from rackfit.estimator.fsdp import BackwardMoment
from rackfit.estimator.params import lora_projections
from rackfit.estimator.result import Layout
from rackfit.models import ModelArch, heaviest_stage_layers
from rackfit.models.quantization import Quantization
from rackfit.spec import LORA_TARGETS, Training


def _torchtune_lora(tr: Training) -> bool:
    """LoRA/QLoRA under framework fsdp with FSDP2 and torchtune's model code (not transformers')."""
    return tr.framework == "fsdp" and tr.method in ("lora", "qlora") and tr.fsdp == 2 and not tr.hf_model_code


def single_device_recipe(tr: Training, layout: Layout) -> bool:
    """LoRA/QLoRA under framework fsdp (FSDP2, torchtune's model code, not transformers') on one GPU: torchtune's
    lora_finetune_single_device, which does not shard (module docstring)."""
    return _torchtune_lora(tr) and layout.data == 1 and layout.tensor == 1 and layout.pipeline == 1


def single_device_gathered(tr: Training, largest_matrix: int, compute_bytes: int) -> int:
    """Bytes the single-device recipe holds beside its stored weights where FSDP2 holds gathered copies: none for
    LoRA (the 16-bit base is used in place); for QLoRA one dequantized 16-bit matrix at a time (`largest_matrix`
    elements: torchao LinearNF4's `weight.to(input.dtype)`, module docstring)."""
    return largest_matrix * compute_bytes if tr.method == "qlora" else 0


# --- torchtune before 0.3: QLoRA quantized only the adapted projections (issue 22, T1104) --------------------------

ATTENTION_ROLES = frozenset(("q", "k", "v", "o"))


def unadapted_16bit_bytes(a: ModelArch, tr: Training, layout: Layout, q: Quantization) -> int:
    """Bytes the weights hold beyond weights.weight_bytes' count (every decoder projection in `q`'s 4-bit format)
    under QLoRA with torchtune before 0.3 (training.torchtuneVersion, spec.releases.TORCHTUNE_FROZEN_NF4_UNADAPTED):
    its builders quantize only the adapted projections. torchtune/models/llama3_1/_component_builders.py at v0.2.1
    and 3d7ca3869: `lora_llama3_1_self_attention` builds `LoRALinear(..., quantize_base=quantize_base) if "q_proj"
    in lora_modules else nn.Linear(...)` (k, v, output_proj alike) and `lora_llama3_1` a plain `llama3_mlp` when
    apply_lora_to_mlp is False; llama2, llama3, mistral, gemma and phi3 the same until PR 1119. So each projection
    outside loraTargets stays in the recipe's 16-bit dtype. The output projection is 16-bit at every release ("TODO:
    quantize_base is not applied to final output_proj", with or without apply_lora_to_output), as weight_bytes counts
    it. 0 elsewhere, and for a checkpoint's own quantization or an MoE (torchtune had none before 0.3)."""
    if not tr.torchtune_unadapted_16bit or q.checkpoint or a.is_moe:
        return 0
    unadapted = frozenset(LORA_TARGETS) - tr.targets
    b = q.layers[0]
    per_layer = sum(i * o * (q.dtype_bytes - b.attention) for i, o in lora_projections(a, unadapted & ATTENTION_ROLES))
    per_layer += sum(i * o * (q.dtype_bytes - b.mlp) for i, o in lora_projections(a, unadapted - ATTENTION_ROLES))
    return int(per_layer * heaviest_stage_layers(a.num_layers, layout.pipeline) / layout.tensor)


def nf4_largest_matrix(a: ModelArch, tr: Training, largest: int) -> int:
    """Elements of the largest decoder matrix QLoRA dequantizes to 16 bits for its matmul (LinearNF4's
    `weight.to(input.dtype)`): `largest`, every projection's, unless torchtune before 0.3 keeps the unadapted ones
    plain 16-bit nn.Linear (unadapted_16bit_bytes), whose matmul makes no copy: then the largest adapted one."""
    if not tr.torchtune_unadapted_16bit or a.is_moe:
        return largest
    return max(i * o for i, o in lora_projections(a, tr.targets))


# --- lora_finetune_distributed: what FSDP2 holds gathered, moment by moment (issue 22) ---------------------


def distributed_recipe(tr: Training, layout: Layout) -> bool:
    """LoRA/QLoRA under framework fsdp (FSDP2, torchtune's model code) over `data` > 1 without pipeline stages:
    torchtune's lora_finetune_distributed. Its `_setup_model` (recipes/lora_finetune_distributed.py at 30b8519e8)
    calls training.shard_model (torchtune/training/_distributed.py) with `shard_conditions=[_is_layer_name]` (the
    modules named `layers.i`) and `reshard_after_forward=cfg.get("fsdp_reshard_after_forward", True)`: fully_shard
    on each decoder layer, then `fully_shard(model)`, the root group holding tok_embeddings, the final norm and
    output; no custom_sharded_layers in that recipe."""
    return _torchtune_lora(tr) and layout.data > 1 and layout.pipeline == 1


def distributed_gathered(root: int, stored_layer: int, dequant: int) -> tuple[int, int]:
    """(at the loss's backward, at a decoder layer's backward) the bytes lora_finetune_distributed holds gathered
    beside the shards, read in torch's FSDP2 (torch/distributed/_composable/fsdp/ in torch 2.4.1 and 2.5.1, the
    releases torchtune ran on in September 2024). `root`: the root group's 16-bit embeddings, norm and output;
    `stored_layer`: one decoder layer as stored (16-bit, or NF4 data and scalers: torchao's NF4Tensor gathers its
    4-bit tensors through fsdp_pre_all_gather, viewed as uint8 by `foreach_all_gather`); `dequant`: QLoRA's one
    16-bit matrix (LinearNF4 `weight.to(input.dtype)`).
    - The root is never resharded after the forward (_fsdp_state.py `_lazy_init`: the root's
      post_forward_mesh_info = None), so it stays in the default stream to the end of the backward (its inputs, the
      token ids, need no gradient: its post_backward runs in `_root_post_backward_final_callback`).
    - Each layer is resharded in its post_forward (`reshard`), the last one too. The backward prefetch starts in a
      group's pre-backward hook, `tensor.register_hook(self._pre_backward)` on its forward outputs
      (`_register_pre_backward_hook`), which autograd runs once it has made that output's gradient. The root's
      outputs are the logits, so its pre_backward (unshard: a no-op; `_prefetch_unshard` of post_forward_order[-2],
      the last layer) runs after the loss's backward has made the logits' gradient: during the loss's backward no
      decoder layer is gathered. From the last layer's pre_backward on, one layer is unsharded in the default stream
      (its post_backward reshards it before the next one's pre_backward) and the next one's all-gather output is
      allocated in the copy-in stream until that one's `wait_for_unshard` copies it out.
    - The copy-in pool: `foreach_all_gather` allocates each group's all-gather output (`torch.empty(
      all_gather_input_numel * world_size)`) under `torch.cuda.stream(all_gather_copy_in_stream)` in the forward
      and in the backward's prefetch (`get_all_gather_streams`: FORWARD, PRE_BACKWARD), and in the forward
      `wait_for_unshard` keeps the previous group's output in `comm_ctx.all_gather_state` until the next group's
      all-gather is issued. The root's is the first, so the root's and layer 0's outputs are allocated together: the
      copy-in stream reserves `root + stored_layer` in the first step, and the caching allocator gives those blocks
      back only to that stream (c10/cuda/CUDACachingAllocator.cpp get_free_block), so they stay reserved at every
      later moment; the backward's prefetched layer is carved from them. Counted as gathered, as
      fsdp.fsdp2_copy_in_pool and fsdp2_root_group_extra count it for the full fine-tune."""
    pool = root + stored_layer
    return root + pool, root + pool + stored_layer + dequant


def distributed_moments(kept: int, loss: int, recompute: int, gathered: tuple[int, int]) -> list[BackwardMoment]:
    """lora_finetune_distributed's backward moments (distributed_gathered): the loss's backward with the kept
    activations and the loss's buffers, and the last layer's recompute (or backward) beside them. The frozen base
    makes no gradient; the adapters' unsharded gradients and their reduce-scatter input (tiny: rank x width per
    matrix) are left out."""
    block = "layer recompute" if recompute else "layer backward"
    return [BackwardMoment("loss backward", kept + loss, gathered[0], 0),
            BackwardMoment(block, kept + recompute, gathered[1], 0)]


# --- torchao before 0.2: the NF4 base quantized a whole matrix at a time (issue 22) --------------------------------

# Bytes an element torchao 0.1's to_nf4 holds at once (torchao/dtypes/nf4tensor.py of torchao 0.1, NF4Tensor.
# from_tensor -> convert_to_norm_float_weight -> quantize_tensor_nearest): the bf16 source on the GPU (2; torchtune's
# inplace_copy moves the checkpoint's tensor there, `to_nf4(args[0][1].to(dest_tensor.device))` in
# torchtune/utils/_register_nf4_dispatch_ops.py at 20747cd87), the scaled blocks `blocks / scales` (2), and in
# quantize_tensor_nearest `diff = (value - nf4).abs()` over value (numel, 1) and the 16 bf16 NF4 values: the
# subtraction's (numel, 16) bf16 result (32) and its absolute value (32) live together. torchao 0.2.0 runs the same
# comparison over chunks of CHUNK_SIZE = 1024**2 elements (PR 196), a few dozen MiB whatever the matrix.
NF4_WHOLE_TENSOR_BYTES = 2 + 2 + 2 * 16 * 2
NF4_DIFF_BYTES = 2 * 16 * 2   # the two (numel, 16) bf16 blocks alone


def nf4_whole_tensor_load(tr: Training, layout: Layout, stored: int, largest_matrix: int,
                          attention_matrix: int) -> tuple[int, int]:
    """(allocated at the load's peak, reserved free beside it) for torchtune's single-device QLoRA recipe under
    torchao before 0.2 (training.torchaoVersion); (0, 0) elsewhere. The recipe builds the model on the GPU (each
    frozen linear quantized by to_nf4 as it is made) and then load_state_dict copies the checkpoint in through
    inplace_copy, which quantizes each tensor again (recipes/lora_finetune_single_device.py `_setup_model` at
    20747cd87). When the decoder's largest matrix (an MLP projection) is quantized the whole model is stored
    (`stored`: NF4 base, 16-bit embeddings, output and adapters) beside NF4_WHOLE_TENSOR_BYTES of it. The attention
    projections come first in each layer: their two (numel, 16) blocks, freed and cached, are smaller than the MLP
    matrix's and cannot serve them (the caching allocator gives a request a cached block at least its size,
    c10/cuda/CUDACachingAllocator.cpp get_free_block), so they stay reserved beside the peak."""
    if not (single_device_recipe(tr, layout) and tr.method == "qlora" and tr.torchao_whole_tensor_nf4):
        return 0, 0
    cached = NF4_DIFF_BYTES * attention_matrix if attention_matrix < largest_matrix else 0
    return stored + NF4_WHOLE_TENSOR_BYTES * largest_matrix, cached
