"""torchtune's single-device full fine-tune with optimizer_in_bwd and bitsandbytes' paged 8-bit AdamW (issue 22,
T880/T882: torchtune's README tables of September and November 2024). optimizer_in_bwd steps each parameter from its
post-accumulate-grad hook and frees its gradient (torchtune/training/memory.py register_optim_in_bwd_hooks), so no
moment holds every gradient and no step follows the backward; PagedAdamW8bit keeps its states in CUDA managed memory
(bitsandbytes/functional.py get_paged), outside PyTorch's allocator."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_states
from rackfit.spec import InvalidWorkload, parse_spec

GiB = 2**30


def _spec(parallelism=None, **t):
    base = dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw",
                adamwImplementation="fused", microBatchSize=2, sequenceLength=4096, activationCheckpointing="full",
                compile=True, lossChunks=8)
    return parse_spec(dict(model=dict(preset="llama-3.2-3b"), workload="training", precision="bf16",
                           training={**base, **t}, parallelism=parallelism or dict(data=1)))


def test_optimizer_in_backward_drops_every_gradient_but_the_largest_and_the_step():
    plain, fused = estimate(_spec()), estimate(_spec(optimizerInBackward=True))
    assert plain.peak_phase == "optimizer step"
    assert fused.peak_phase != "optimizer step"
    # Llama 3.2 3B's largest trained tensor is the tied embedding: 128,256 x 3,072 bf16
    largest = 128256 * 3072 * 2
    assert fused.breakdown.gradients_bytes == largest
    assert plain.breakdown.gradients_bytes == plain.breakdown.weights_bytes   # every bf16 gradient at the step
    # allocated at the peak (the estimate less its overhead and slack): the step's 6 GiB of gradients gone, the
    # backward's activations and one embedding-sized gradient instead
    def allocated(e):
        return e.total_bytes - e.breakdown.overhead_bytes
    b = fused.breakdown
    assert allocated(fused) == b.weights_bytes + b.optimizer_states_bytes + b.activations_bytes + largest
    assert b.activations_bytes > 0
    assert allocated(fused) < allocated(plain)


def test_paged_8bit_states_are_not_counted_on_the_gpu():
    on_gpu = training_states(_spec(optimizer="adamw8bit", adamwImplementation=None))
    paged = training_states(_spec(optimizer="adamw8bit", adamwImplementation=None, pagedOptimizer=True))
    assert on_gpu.optimizer == 2 * on_gpu.weights // 2   # two 8-bit states a parameter
    assert paged.optimizer == 0
    e = estimate(_spec(optimizer="adamw8bit", adamwImplementation=None, pagedOptimizer=True))
    assert any("pagedOptimizer" in n for n in e.notes)


def test_paged_32bit_adamw_states_are_not_counted_on_the_gpu():
    """bitsandbytes' PagedAdamW (optim_bits 32, is_paged; T1070: torchtune's llama2/7B_full_low_memory of May 2024)
    keeps fp32 states in managed memory: the two states torch's AdamW would hold on the GPU drop out."""
    torch_adamw = training_states(_spec(adamwImplementation=None))
    paged = training_states(_spec(adamwImplementation=None, pagedOptimizer=True))
    assert torch_adamw.optimizer == 2 * torch_adamw.weights   # two bf16 states a bf16 parameter
    assert paged.optimizer == 0
    assert paged.weights == torch_adamw.weights and paged.gradients == torch_adamw.gradients
    e = estimate(_spec(adamwImplementation=None, pagedOptimizer=True))
    assert any("pagedOptimizer" in n for n in e.notes)
    assert e.total_bytes < estimate(_spec(adamwImplementation=None)).total_bytes


@pytest.mark.parametrize("training,parallelism", [
    (dict(optimizerInBackward=True), dict(data=2)),
    (dict(optimizerInBackward=True, gradientAccumulationSteps=4), None),
    (dict(optimizerInBackward=True, framework="fsdp"), None),
    (dict(optimizerInBackward=True, method="lora"), None),
])
def test_optimizer_in_backward_is_refused_outside_the_single_device_full_recipe(training, parallelism):
    with pytest.raises(InvalidWorkload, match="optimizerInBackward"):
        _spec(parallelism, **training)


@pytest.mark.parametrize("training", [
    dict(pagedOptimizer=True),
    dict(pagedOptimizer=True, optimizer="adamw8bit", adamwImplementation=None, framework="fsdp"),
    dict(pagedOptimizer=True, adamwImplementation=None, framework="fsdp"),
    dict(pagedOptimizer=True, optimizer="sgd", adamwImplementation=None),
])
def test_paged_optimizer_is_refused_outside_bitsandbytes_adamw_under_transformers(training):
    with pytest.raises(InvalidWorkload, match="pagedOptimizer"):
        _spec(**training)
