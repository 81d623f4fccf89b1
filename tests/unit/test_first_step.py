"""training.firstStep (issue 22, T743, T744): torch.optim creates a parameter's states in its first step()
(torch/optim/adamw.py `_init_group`), so step 1's forward and backward run without the optimizer's states and its
step allocates them: the peak is the larger of the backward's without them and the step's with them."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_peak
from rackfit.spec import InvalidWorkload, parse_spec

# torchtitan's DeepSeek-V3 16B (T744's shapes): under expert parallel 4 over 4 GPUs its experts are not FSDP-split,
# so the model states dwarf the activations of full checkpointing
DSV3_16B = dict(numLayers=27, hiddenSize=2048, intermediateSize=10944, numAttentionHeads=16, numKeyValueHeads=16,
                headDim=128, vocabSize=102400, tieWordEmbeddings=False, numExperts=64, numExpertsPerToken=6,
                moeIntermediateSize=1408, numSharedExperts=2, firstDenseLayers=1, kvLoraRank=512, qkRopeHeadDim=64,
                qkNopeHeadDim=128, vHeadDim=128)


def _spec(arch=None, preset=None, parallelism=None, **t):
    base = dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=4,
                sequenceLength=4096, activationCheckpointing="full", expandableSegments=True,
                adamwImplementation="fused")
    model = dict(preset=preset) if preset else dict(architecture=arch or DSV3_16B)
    return parse_spec(dict(model=model, workload="training", precision="bf16", training={**base, **t},
                           parallelism=parallelism or dict(data=4, expert=4)))


def test_states_heavy_first_step_peaks_at_the_step_that_creates_them():
    later, first = _spec(), _spec(firstStep=True)
    r, f = training_peak(later), training_peak(first)
    assert r.phase != "optimizer step"           # a later step peaks in the backward, beside the states
    assert f.phase == "optimizer step"           # step 1's backward lacks them; its step allocates them
    assert f.unheld_optimizer == r.optimizer > 0
    # the step holds every model state: the sharded weights and gradients and the new optimizer states
    assert f.weights + f.gradients + f.optimizer >= r.states == f.states
    assert estimate(first).total_bytes < estimate(later).total_bytes


def test_activation_heavy_first_step_is_the_backward_without_the_states():
    # Llama 3.1 8B over 8 GPUs, per-op SAC at 8192 tokens: the backward's activations outgrow the step
    kw = dict(preset="llama-3.1-8b", parallelism=dict(data=8), microBatchSize=1, sequenceLength=8192,
              activationCheckpointing="selective")
    later, first = _spec(**kw), _spec(firstStep=True, **kw)
    r, f = training_peak(later), training_peak(first)
    assert f.phase == r.phase != "optimizer step"
    assert f.optimizer == 0 and r.optimizer > 0   # the backward runs before the states exist
    assert f.activations == r.activations
    assert estimate(later).total_bytes - estimate(first).total_bytes == r.optimizer


@pytest.mark.parametrize("t", [dict(framework="deepspeed", zeroStage=3),
                               dict(framework="transformers", expandableSegments=None), dict(framework="megatron")])
def test_only_framework_fsdp_takes_it(t):
    with pytest.raises(InvalidWorkload, match="firstStep"):
        _spec(firstStep=True, parallelism=dict(data=4), **t)
