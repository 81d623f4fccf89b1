"""NCCL's memory outside torch's allocator in multi-GPU training (estimator/comms.py, issue 22): the communicators a
rank holds, by framework, and what each costs by interconnect. Expected bytes are worked out by hand from NCCL's
ncclNvlsBufferSetup (nvlsChannels x 2 x 128 KiB x 8 steps x heads) and the serving side's measured constants."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import CUDA_CONTEXT_BYTES, Layout, estimate
from rackfit.estimator.comms import comm_bytes, communicators, training_nccl_bytes
from rackfit.estimator.non_torch import NCCL_PER_PEER
from rackfit.estimator.startup import NCCL_EP_GROUP_NVLINK
from rackfit.spec import Training, parse_spec
from rackfit.units import GiB, MiB

H100 = GPU(model="H100", product="NVIDIA-H100-80GB-HBM3", memoryGB=80, memoryMiB=81559, architecture="hopper")
B200 = GPU(model="B200", product="NVIDIA-B200", memoryGB=180, memoryMiB=183359, architecture="blackwell")
A100 = GPU(model="A100", product="A100-SXM4-80GB", memoryGB=80, memoryMiB=81920, architecture="ampere")
L40S = GPU(model="L40S", product="NVIDIA-L40S", memoryGB=48, memoryMiB=46068, architecture="ada")


def test_communicators_each_framework_opens():
    fsdp, mega, ds, hf = (Training(framework=f) for f in ("fsdp", "megatron", "deepspeed", "transformers"))
    assert communicators(fsdp, Layout()) == []
    # 1-D FSDP: the mesh reuses the default group, where torchtitan broadcasts its seed
    assert communicators(fsdp, Layout(data=8)) == [8]
    # TP 2 x FSDP 4 (T40): world, FSDP's shard group, tp, and the flattened loss mesh over the data ranks
    assert communicators(fsdp, Layout(data=4, tensor=2)) == [8, 4, 2, 4]
    assert communicators(fsdp, Layout(tensor=2, pipeline=2)) == [4, 2, 2]
    assert communicators(mega, Layout(data=2, tensor=2, pipeline=2)) == [8, 2, 2, 2]
    # ZeRO runs on a clone of the world group, beside the default one
    assert communicators(ds, Layout(data=8)) == [8, 8]
    assert communicators(Training(framework="transformers", zeroStage=2), Layout(data=4)) == [4, 4]
    assert communicators(hf, Layout(data=2)) == [2]


def test_one_communicator_by_interconnect():
    # NVLink without NVLS (2 ranks, or Ampere): the serving side's one-communicator measurement, 0.48 GiB
    assert comm_bytes(2, H100) == NCCL_EP_GROUP_NVLINK == int(0.48 * GiB)
    assert comm_bytes(8, A100) == NCCL_EP_GROUP_NVLINK
    # NVLS on an H100 node, 8 heads: 16 channels x 2 x 1 MiB x 8 = 256 MiB, plus the credit buffer's 2 MiB granule
    assert comm_bytes(8, H100) == NCCL_EP_GROUP_NVLINK + 256 * MiB + 2 * MiB
    # Blackwell, one node: 24 channels x 2 x 1 MiB x 4 heads = 192 MiB (+ 2 MiB)
    assert comm_bytes(4, B200) == NCCL_EP_GROUP_NVLINK + 192 * MiB + 2 * MiB
    # a group wider than a node pulls from its 8 local GPUs
    assert comm_bytes(64, B200) == NCCL_EP_GROUP_NVLINK + 384 * MiB + 2 * MiB
    # no GPU given: an H100 SXM node, as the serving side assumes
    assert comm_bytes(8, None) == comm_bytes(8, H100)
    # PCIe: half vLLM's two-communicator per-peer cost, per peer: 3 peers x 0.1 GiB
    assert comm_bytes(4, L40S) == 3 * (NCCL_PER_PEER // 2)


def test_t40_layout_on_b200():
    """T40: TP 2 x FSDP 4 on 8 x B200. world (8 heads) 384 + 2 MiB, two 4-rank groups 194 MiB each, tp none."""
    t = Training(framework="fsdp")
    expected = 4 * NCCL_EP_GROUP_NVLINK + (384 + 2) * MiB + 2 * (192 + 2) * MiB
    assert training_nccl_bytes(t, Layout(data=4, tensor=2), B200) == expected
    assert 2.6 * GiB < expected < 2.7 * GiB


def test_estimate_counts_the_communicators_in_training():
    doc = dict(model=dict(preset="llama-3.1-8b"), workload="training",
               training=dict(framework="fsdp", activationCheckpointing="full", sequenceLength=1024))
    spec = parse_spec(doc)
    eight = estimate(spec, Layout(data=8), gpu=H100)
    slack8 = estimate(spec, Layout(data=8)).breakdown.overhead_bytes - CUDA_CONTEXT_BYTES - comm_bytes(8, None)
    assert eight.breakdown.overhead_bytes == CUDA_CONTEXT_BYTES + comm_bytes(8, H100) + slack8


def test_inference_without_an_engine_keeps_the_flat_nccl_bytes(monkeypatch):
    import rackfit.estimator as est_mod
    inf = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                          inference=dict(engine="transformers")))
    before = estimate(inf, Layout(tensor=2)).total_bytes
    monkeypatch.setattr(est_mod, "NCCL_BYTES", 0)
    assert before - estimate(inf, Layout(tensor=2)).total_bytes == 512 * MiB


def test_megatron_moe_adds_the_expert_groups():
    """Megatron-Core MoE (core_r0.11.0-0.13.0): the expert-tensor-and-model group, which both token dispatchers gather
    over, and the expert data-parallel group of the experts' gradients and optimizer, each its own communicator; a
    one-rank group holds none. T780's layout: TP 2, DP 4, EP 4, expert tensor parallel defaulting to TP 2."""
    mega = Training(framework="megatron")
    assert communicators(mega, Layout(tensor=2, data=4, expert=4), moe=True) == [8, 4, 2, 8]   # expert DP 1
    assert communicators(mega, Layout(tensor=2, data=4, expert=4)) == [8, 4, 2]                # a dense model
    # T781: PP 2, DP 4, EP 4, ETP 1: the 4-rank tp-ep group beside the EP ranks' own, expert DP 8 / (1 x 4 x 2) = 1
    assert communicators(mega, Layout(pipeline=2, data=4, expert=4), moe=True) == [8, 4, 2, 4]
    # expertTensorParallel 1 at TP 2, DP 4, EP 2: tp-ep 2, expert DP 8 / 2 = 4
    etp1 = Training(framework="megatron", expertTensorParallel=1)
    assert communicators(etp1, Layout(tensor=2, data=4, expert=2), moe=True) == [8, 4, 2, 2, 4]
    # no expert parallelism: nothing more
    assert communicators(mega, Layout(tensor=2, data=4), moe=True) == [8, 4, 2]
    # the estimate passes the model's experts: T780's MoE pays one communicator more than the same layout dense
    arch = dict(numLayers=4, hiddenSize=1024, intermediateSize=2816, numAttentionHeads=8, numKeyValueHeads=8,
                headDim=128, vocabSize=32000)
    tr = dict(framework="megatron", activationCheckpointing="full", sequenceLength=1024)
    layout = Layout(tensor=2, data=4, expert=4)

    def overhead(a):
        return estimate(parse_spec(dict(model=dict(architecture=a), workload="training", training=tr)), layout,
                        gpu=A100).breakdown.overhead_bytes
    moe = dict(arch, numExperts=8, numExpertsPerToken=2, moeIntermediateSize=704)
    assert overhead(moe) - overhead(arch) == comm_bytes(8, A100) == NCCL_EP_GROUP_NVLINK
