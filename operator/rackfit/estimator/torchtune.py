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

from rackfit.estimator.result import Layout
from rackfit.spec import Training


def single_device_recipe(tr: Training, layout: Layout) -> bool:
    """LoRA/QLoRA under framework fsdp (FSDP2, torchtune's model code, not transformers') on one GPU: torchtune's
    lora_finetune_single_device, which does not shard (module docstring)."""
    return (tr.framework == "fsdp" and tr.method in ("lora", "qlora") and tr.fsdp == 2 and not tr.hf_model_code
            and layout.data == 1 and layout.tensor == 1 and layout.pipeline == 1)


def single_device_gathered(tr: Training, largest_matrix: int, compute_bytes: int) -> int:
    """Bytes the single-device recipe holds beside its stored weights where FSDP2 holds gathered copies: none for
    LoRA (the 16-bit base is used in place); for QLoRA one dequantized 16-bit matrix at a time (`largest_matrix`
    elements: torchao LinearNF4's `weight.to(input.dtype)`, module docstring)."""
    return largest_matrix * compute_bytes if tr.method == "qlora" else 0
