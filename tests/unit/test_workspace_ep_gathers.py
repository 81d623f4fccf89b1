"""torch's cuBLAS workspaces outside Megatron (megatron_buffers.torch_workspace_bytes) and torchtitan's expert-sharded
FSDP2 under expert parallel (fsdp.fsdp2_gathered_layer_params), issue 22."""

from __future__ import annotations

from rackfit.estimator import Layout, estimate
from rackfit.estimator import megatron_buffers as mb
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.fsdp import fsdp2_gathered_layer_params, largest_layer_params
from rackfit.estimator.params import count_params
from rackfit.models import ModelArch, resolve
from rackfit.spec import ModelSource, Training, parse_spec

MiB = 1 << 20
# T262's torchtitan DeepSeek-V3 "16B" (bench/cases/public/training.yaml)
DSV3_16B = dict(numLayers=27, hiddenSize=2048, intermediateSize=10944, numAttentionHeads=16, numKeyValueHeads=16,
                headDim=128, vocabSize=102400, tieWordEmbeddings=False, numExperts=64, numExpertsPerToken=6,
                moeIntermediateSize=1408, numSharedExperts=2, firstDenseLayers=1, kvLoraRank=512, qkRopeHeadDim=64,
                qkNopeHeadDim=128, vHeadDim=128)


def _spec(framework: str, data: int = 1, **training):
    return parse_spec(dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16",
                           training=dict(framework=framework, microBatchSize=1, sequenceLength=1024, **training),
                           parallelism=dict(data=data)))


def _dsv3(expert: int, **training) -> tuple:
    spec = parse_spec(dict(model=dict(architecture=DSV3_16B), workload="training", precision="bf16",
                           training=dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw",
                                         microBatchSize=8, sequenceLength=4096, activationCheckpointing="selective",
                                         compile=False, compileLoss=True, torchtitanVersion="0.2", **training),
                           parallelism=dict(data=8, expert=expert)))
    return spec, resolve(spec.model)


def test_torch_workspaces_two_threads_of_32_mib():
    # CUBLAS_WORKSPACE_CONFIG ":4096:8" (torch's Hopper default): 4,096 KiB x 8, one for the forward's thread, one for
    # autograd's; the H200 calibration read 33,554,432 B reserved after one bf16 matmul (one handle)
    assert mb.torch_workspace_bytes(Training(framework="fsdp")) == 2 * 4096 * 1024 * 8 == 67_108_864
    for fw in ("fsdp", "deepspeed", "transformers"):
        assert mb.torch_workspace_bytes_outside_megatron(Training(framework=fw)) == 64 * MiB
    assert mb.torch_workspace_bytes_outside_megatron(Training(framework="megatron")) == 0
    # Megatron's count is the same function's, not a second copy
    llama = resolve(ModelSource(preset="llama-3.2-1b"))
    assert mb.megatron_workspace_bytes(llama, Training(framework="megatron")) == 64 * MiB


def test_every_framework_counts_them_once(monkeypatch):
    specs = [_spec("transformers"), _spec("fsdp", 2), _spec("deepspeed", 2, zeroStage=2),
             _spec("megatron", 2)]
    with_ws = [estimate(s).total_bytes for s in specs]
    monkeypatch.setattr(mb, "TORCH_CUBLAS_WORKSPACE_HOPPER_BYTES", 0)
    without = [estimate(s).total_bytes for s in specs]
    assert [a - b for a, b in zip(with_ws, without, strict=True)] == [64 * MiB] * 4


def test_ep_gathers_only_the_local_experts():
    spec, arch = _dsv3(8)
    p = count_params(arch)
    # 26 MoE layers x 64 experts x (w1, w2, w3 of 2048 x 1408)
    assert p.experts == 26 * 64 * 3 * 2048 * 1408 == 14_394_851_328
    whole = largest_layer_params(arch, p)
    # the other 7 EP ranks' experts, 7/8 of them, averaged over the 27 layers as largest_layer_params averages
    assert whole - fsdp2_gathered_layer_params(arch, p, spec.training, Layout(data=8, expert=8)) == \
        14_394_851_328 * 7 // 8 // 27 == 466_499_811
    assert fsdp2_gathered_layer_params(arch, p, spec.training, Layout(data=8, expert=1)) == whole


def test_ep_gathers_apply_to_torchtitan_moe_fsdp2_only():
    spec, arch = _dsv3(8)
    p = count_params(arch)
    ep = Layout(data=8, expert=8)
    whole = largest_layer_params(arch, p)
    for update in (dict(fsdp_version=1), dict(method="lora")):
        tr = spec.training.model_copy(update=update)
        assert fsdp2_gathered_layer_params(arch, p, tr, ep) == whole
    assert fsdp2_gathered_layer_params(arch, p, spec.training, Layout(data=8, expert=8, tensor=2)) == whole
    dense: ModelArch = resolve(ModelSource(preset="llama-3.2-1b"))
    dp = count_params(dense)
    assert fsdp2_gathered_layer_params(dense, dp, spec.training, ep) == largest_layer_params(dense, dp)


def test_ep_keeps_the_sharded_states_and_lowers_the_peak():
    spec, arch = _dsv3(8)
    p = count_params(arch)
    r8 = runtime_peak(arch, p, spec.training, "bf16", Layout(data=8, expert=8), 0)
    spec1, _ = _dsv3(1)
    r1 = runtime_peak(arch, p, spec1.training, "bf16", Layout(data=8, expert=1), 0)
    # experts sharded over ep x dp_shard_mod_ep = 8 ranks, as the dense parameters over dp_shard: the same states
    assert r8.states == r1.states
    # two blocks in flight and the copy-in pool's block, each 466,499,811 x 2 B smaller: the peak comes down
    assert r8.weights < r1.weights
