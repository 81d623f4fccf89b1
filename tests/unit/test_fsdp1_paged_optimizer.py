"""The HF Trainer's optim paged_adamw_32bit / paged_adamw_8bit under accelerate's FSDP1 (issue 22, T1640: the
Hugging Face blog's Llama 2 70B FSDP fine-tune, whose train.py defaults --optim to paged_adamw_32bit). The Trainer
builds bitsandbytes' AdamW(is_paged=True) after accelerate wraps the model, over the sharded parameters, so the
fp32 states are CUDA managed memory (bitsandbytes/functional.py get_paged) the driver pages to the host: not counted
on the GPU, as for framework transformers. FSDP2 (torchtune's recipes) still refuses it."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate
from rackfit.spec import InvalidWorkload, parse_spec


def _spec(**t):
    base = dict(framework="fsdp", fsdpVersion=1, method="full", masterWeights="fp32", optimizer="adamw",
                microBatchSize=1, sequenceLength=2048, activationCheckpointing="full")
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16",
                           training={**base, **t}, parallelism=dict(data=8)))


def test_paged_adamw_under_fsdp1_keeps_its_states_off_the_gpu():
    plain = estimate(_spec(adamwImplementation="foreach"))
    paged = estimate(_spec(pagedOptimizer=True))
    # torch AdamW's two fp32 moments of this rank's shard (8 bytes a parameter over 8 ranks) no longer sit on the GPU
    moments = 8 * plain.parameters / 8
    assert plain.breakdown.optimizer_states_bytes == pytest.approx(moments, rel=0.01)
    assert paged.breakdown.optimizer_states_bytes == 0
    assert paged.total_bytes < plain.total_bytes
    assert any("pagedOptimizer" in n for n in paged.notes)


def test_paged_adamw_under_fsdp1_has_no_foreach_step_temporary():
    # FSDP1's default torch AdamW is foreach (one fp32 shard-sized _foreach_sqrt temporary at the step);
    # bitsandbytes' kernel updates in place, so the paged step holds no state-sized temporary
    from rackfit.estimator.training import step_temporary_bytes
    assert step_temporary_bytes(_spec(adamwImplementation="foreach").training, 10**9, 4, 10**6) == 4 * 10**9
    assert step_temporary_bytes(_spec(pagedOptimizer=True).training, 10**9, 4, 10**6) == 0


@pytest.mark.parametrize("training", [
    dict(pagedOptimizer=True, fsdpVersion=2),
    dict(pagedOptimizer=True, adamwImplementation="foreach"),
])
def test_paged_adamw_is_refused_under_fsdp2_or_with_torch_adamw(training):
    with pytest.raises(InvalidWorkload, match="pagedOptimizer"):
        _spec(**training)
