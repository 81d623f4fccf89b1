"""torchtitan's whole-model joint-graph trainers (training.jointGraph, joint_graph_keeps_gathered):
AOTAutograd's default_partition saves every forward node the backward uses except the MUST_RECOMPUTE all-gathers, so
without checkpointing the layers keep eager autograd's saved set and every block's gathered 16-bit weights (the views
the matmuls' backward reads); with checkpointing nothing changes. Expected bytes from Llama 3.1 8B's shapes by hand."""

from __future__ import annotations

import pytest

from rackfit.estimator import training_peak
from rackfit.estimator.framework_activations import joint_graph_keeps_gathered, runtime_activations
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import Training, parse_spec

# Llama 3.1 8B by hand: a block's wq 4096^2, wk and wv 4096 x 1024, wo 4096^2, w1/w2/w3 3 x 4096 x 14336, two norms
BLOCK = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096


def _spec(ckpt: str = "none", tensor: int = 2, **training):
    tr = dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
              sequenceLength=8192, activationCheckpointing=ckpt, compile=True, expandableSegments=True,
              adamwImplementation="fused", torchtitanVersion="0.2.2")
    tr.update(training)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16", training=tr,
                           parallelism=dict(data=4, tensor=tensor)))


def test_without_checkpointing_every_block_stays_gathered():
    # reshard_after_forward's two blocks in flight become all 32, split over tensor 2: 30 blocks' 16-bit weights more,
    # and the copy-in pool's block, counted as the second in flight before, adds its own (as reshardAfterForward false)
    plain, joint = training_peak(_spec()), training_peak(_spec(jointGraph=True))
    assert joint.weights - plain.weights == pytest.approx(31 * BLOCK // 2 * 2, rel=1e-4)
    # the same gathered set as fully_shard(reshard_after_forward=False) under torch.compile
    never = training_peak(_spec(reshardAfterForward=False))
    assert joint.weights == never.weights


def test_without_checkpointing_the_saved_set_is_eagers():
    s = _spec(jointGraph=True)
    arch, tr, layout = resolve(s.model), s.training, s.parallelism
    eager = tr.model_copy(update={"compile": False, "compile_loss": True, "joint_graph": None})
    compiled = tr.model_copy(update={"joint_graph": None})
    joint_act, eager_act = runtime_activations(arch, tr, layout), runtime_activations(arch, eager, layout)
    assert joint_act.kept == eager_act.kept
    assert joint_act.kept > runtime_activations(arch, compiled, layout).kept
    # the loss is as compile / compileLoss say: compiled here, Inductor's 16-bit logits
    assert (joint_act.loss_forward, joint_act.loss_backward) == (eager_act.loss_forward, eager_act.loss_backward)


@pytest.mark.parametrize("ckpt", ["selective", "full"])
def test_checkpointing_regions_are_partitioned_as_compiled(ckpt):
    plain, joint = _spec(ckpt), _spec(ckpt, jointGraph=True)
    assert not joint_graph_keeps_gathered(joint.training)
    assert training_peak(joint) == training_peak(plain)


def test_one_tensor_rank_gathers_whole_blocks():
    plain, joint = training_peak(_spec(tensor=1)), training_peak(_spec(tensor=1, jointGraph=True))
    p = count_params(resolve(_spec(tensor=1).model))
    layer = (p.total - 2 * p.embedding) // 32
    assert joint.weights - plain.weights == 31 * layer * 2   # as above: 30 blocks and the pool's
    assert abs(layer - BLOCK) <= 128


@pytest.mark.parametrize("training", [dict(framework="deepspeed"), dict(framework="fsdp", compile=False),
                                      dict(framework="fsdp", compile=True, fsdpVersion=1),
                                      dict(framework="fsdp", compile=True, modelCode="transformers")])
def test_joint_graph_is_torchtitans_compiled_fsdp2(training):
    with pytest.raises(ValueError, match="jointGraph"):
        Training(method="full", microBatchSize=1, sequenceLength=8, jointGraph=True, **training)
