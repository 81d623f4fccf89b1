"""training.cpuCheckpointing (issue 22, T466): DeepSpeed's activation_checkpointing.cpu_checkpointing moves each
checkpointed layer's input to host memory in the forward and brings one back at a time in the backward
(deepspeed/runtime/activation_checkpointing/checkpointing.py, CheckpointFunction), so only the layer being recomputed
keeps its input on the GPU."""

from __future__ import annotations

import pytest

from rackfit.estimator import estimate, training_peak
from rackfit.spec import InvalidWorkload, parse_spec

GPT2_10B = dict(numLayers=50, hiddenSize=4096, intermediateSize=16384, numAttentionHeads=32, numKeyValueHeads=32,
                headDim=128, vocabSize=50304, tieWordEmbeddings=True, gatedMlp=False)


def _zero_offload(**t):
    base = dict(framework="deepspeed", zeroStage=2, method="full", masterWeights="fp32", optimizer="adamw",
                offloadOptimizer=True, microBatchSize=10, sequenceLength=1024, activationCheckpointing="full",
                flashAttention=False)
    return parse_spec(dict(model=dict(architecture=GPT2_10B), workload="training", precision="fp16",
                           training={**base, **t}, parallelism=dict(data=1)))


def test_all_layer_inputs_but_one_leave_the_gpu():
    on_gpu, on_cpu = _zero_offload(), _zero_offload(cpuCheckpointing=True)
    gpu, cpu = training_peak(on_gpu), training_peak(on_cpu)
    layer_input = 10 * 1024 * 4096 * 2   # micro-batch x sequence x hidden, fp16
    # 49 of the 50 checkpointed inputs are in host memory at the loss backward's peak
    assert gpu.activations - cpu.activations == 49 * layer_input
    assert estimate(on_cpu).total_bytes < estimate(on_gpu).total_bytes
    # the model states do not move
    assert (gpu.weights, gpu.gradients, gpu.optimizer) == (cpu.weights, cpu.gradients, cpu.optimizer)


@pytest.mark.parametrize("t", [dict(activationCheckpointing="selective"), dict(activationCheckpointing="none"),
                               dict(framework="transformers", zeroStage=0, offloadOptimizer=None),
                               dict(framework="fsdp", zeroStage=0, offloadOptimizer=None)])
def test_only_deepspeed_full_checkpointing_takes_it(t):
    with pytest.raises(InvalidWorkload, match="cpuCheckpointing"):
        _zero_offload(cpuCheckpointing=True, **t)
