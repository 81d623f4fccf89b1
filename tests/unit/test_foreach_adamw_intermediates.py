"""training.torchVersion and foreach AdamW (issue 22, T1402): before PyTorch 2.1 torch/optim/adamw.py
`_multi_tensor_adamw` made `exp_avg_sq_sqrt = torch._foreach_sqrt(...)` and then `denom = torch._foreach_add(
exp_avg_sq_sqrt, eps)`, two state-sized lists alive at its addcdiv; pytorch PR 104898 (July 2023, in 2.1) adds the eps
in place, leaving one (spec.training Training.foreach_adamw_intermediates, estimator/training.py
step_temporary_bytes)."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_states
from rackfit.estimator.training import step_temporary_bytes
from rackfit.spec import parse_spec

FULL = dict(framework="transformers", method="full", masterWeights="none", optimizer="adamw",
            adamwImplementation="foreach", microBatchSize=1, sequenceLength=512, activationCheckpointing="full")


def _spec(**training):
    arch = dict(numLayers=16, hiddenSize=2048, intermediateSize=8192, numAttentionHeads=8, numKeyValueHeads=8,
                headDim=256, vocabSize=50304, tieWordEmbeddings=False, gatedMlp=False)
    return parse_spec(dict(model=dict(architecture=arch), workload="training", precision="bf16",
                           training={**FULL, **training}, parallelism=dict(data=3)))


@pytest.mark.parametrize("version,intermediates", [("2.0.0", 2), ("2.0.1", 2), ("1.13.1", 2), ("2.1.0", 1),
                                                    ("2.5.1", 1), (None, 1)])
def test_foreach_adamw_before_2_1_holds_two_intermediates(version, intermediates):
    tr = _spec(torchVersion=version).training
    assert tr.foreach_adamw_intermediates == intermediates
    assert step_temporary_bytes(tr, 1000, 2, 100) == 1000 * 2 * intermediates


def test_the_second_list_adds_one_state_sized_copy_at_the_step():
    old, new = _spec(torchVersion="2.0.0"), _spec()
    est_old, est_new = estimate(old), estimate(new)
    assert est_old.peak_phase == est_new.peak_phase == "optimizer step"
    # pythia-1b's bf16 trainable states: one more copy of the 1.01e9 parameters in bf16 (1.88 GiB)
    assert est_old.total_bytes - est_new.total_bytes == training_states(new).trainable * 2
    assert 15.0 < est_old.total_bytes / 2**30 < 15.1   # T1402 logged 15GB (h2o LLM Studio PR 288, torch 2.0.0)


def test_fused_adamw_and_other_optimizers_are_unchanged():
    for training in (dict(adamwImplementation="fused"), dict(optimizer="sgd", adamwImplementation=None)):
        assert estimate(_spec(torchVersion="2.0.0", **training)).total_bytes == \
            estimate(_spec(**training)).total_bytes
