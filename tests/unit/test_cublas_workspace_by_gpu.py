"""The training's cuBLAS workspaces sized by the GPU's architecture (megatron_buffers: torch_cublas_workspace_size,
te_cublas_workspace_size), issue 22: PyTorch's parseChosenWorkspaceSize (aten/src/ATen/cuda/CublasHandlePool.cpp,
":4096:8" = 32 MiB on Hopper and Blackwell, ":4096:2:16:8" = 8.125 MiB before) and Transformer Engine's
get_cublas_workspace_size_bytes (32 MiB + 1 KiB at compute capability 9+, 4 MiB before). Without a GPU: the Hopper
sizes, the larger."""

from __future__ import annotations

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate, training_peak
from rackfit.estimator import megatron_buffers as mb
from rackfit.estimator.context import torch_cublas_workspace_bytes
from rackfit.spec import Training, parse_spec

MiB = 1 << 20
A100 = GPU(model="A100", product="NVIDIA-A100-SXM4-80GB", memoryGB=80, memoryMiB=81920, architecture="ampere")
H100 = GPU(model="H100", product="NVIDIA-H100-80GB-HBM3", memoryGB=80, memoryMiB=81559, architecture="hopper")
TORCH_HOPPER, TORCH_AMPERE = 32 * MiB, 8 * MiB + 128 * 1024          # :4096:8 and :4096:2:16:8
TE_HOPPER, TE_AMPERE = 32 * MiB + 1024, 4 * MiB
# T1364's Megatron MoE (bench/cases/public/training.yaml): TE layers, grouped GEMM, TP 2 x EP 2 x DP 4
MOE = dict(numLayers=12, hiddenSize=512, intermediateSize=2048, numAttentionHeads=8, numKeyValueHeads=8, headDim=64,
           vocabSize=50432, tieWordEmbeddings=True, gatedMlp=False, numExperts=8, numExpertsPerToken=2,
           moeIntermediateSize=2048)


def _moe(**training):
    return parse_spec(dict(model=dict(architecture=MOE), workload="training", precision="bf16",
                           training=dict(framework="megatron", method="full", masterWeights="fp32", optimizer="adamw",
                                         microBatchSize=4, sequenceLength=1024, activationCheckpointing="none",
                                         sequenceParallel=True, distributedOptimizer=False, flashAttention=False,
                                         moeGroupedGemm=True, transformerImpl="transformer_engine", **training),
                           parallelism=dict(tensor=2, data=4, expert=2)))


def _fsdp(**training):
    return parse_spec(dict(model=dict(preset="llama-3.2-1b"), workload="training", precision="bf16",
                           training=dict(framework="fsdp", microBatchSize=1, sequenceLength=1024, **training),
                           parallelism=dict(data=2)))


def test_sizes_by_architecture_and_the_hopper_default():
    for arch in ("volta", "turing", "ampere", "ada"):
        assert mb.torch_cublas_workspace_size(arch) == TORCH_AMPERE == 8_519_680
        assert mb.te_cublas_workspace_size(arch) == TE_AMPERE
    for arch in ("hopper", "blackwell", None):   # None: no GPU given
        assert mb.torch_cublas_workspace_size(arch) == TORCH_HOPPER
        assert mb.te_cublas_workspace_size(arch) == TE_HOPPER
    # the CUDA context's share is the same size (one source of truth)
    assert torch_cublas_workspace_bytes(A100) == TORCH_AMPERE and torch_cublas_workspace_bytes(H100) == TORCH_HOPPER


def test_cublas_workspace_config_overrides_the_default():
    """CUBLAS_WORKSPACE_CONFIG (training.cublasWorkspaceConfig): the sum of SIZE KiB x COUNT, on any GPU."""
    assert mb.workspace_config_bytes(":4096:8") == TORCH_HOPPER
    assert mb.workspace_config_bytes(":4096:2:16:8") == TORCH_AMPERE
    told = Training(framework="megatron", cublasWorkspaceConfig=":4096:8")
    assert mb.torch_cublas_workspace_size("ampere", told) == TORCH_HOPPER
    small = Training(framework="fsdp", cublasWorkspaceConfig=":16:8")
    assert mb.torch_workspace_bytes(small, "hopper") == 2 * 128 * 1024


def test_megatron_moe_rank_a100_against_h100():
    """An A100 rank keeps TE's workspace and grouped GEMM's four at 4 MiB and torch's two at 8.125 MiB; an H100
    rank and a rank with no GPU given keep the Hopper sizes. With CUBLAS_WORKSPACE_CONFIG :4096:8 (T1364's
    functional test) torch's stay 32 MiB on the A100 too."""
    spec = _moe()
    h100, a100, none = (estimate(spec, gpu=g).total_bytes for g in (H100, A100, None))
    te = 1 + mb.TE_GROUPED_GEMM_STREAMS
    assert h100 == none   # the same context (catalog GPU of the calibration's family) and sizes
    peak = {g: training_peak(spec, gpu_architecture=g).states for g in ("hopper", "ampere", None)}
    assert peak["hopper"] == peak[None]
    assert peak["hopper"] - peak["ampere"] == te * (TE_HOPPER - TE_AMPERE) + 2 * (TORCH_HOPPER - TORCH_AMPERE)
    told = _moe(cublasWorkspaceConfig=":4096:8")
    assert training_peak(told).states - training_peak(told, gpu_architecture="ampere").states \
        == te * (TE_HOPPER - TE_AMPERE) == 140 * MiB + 5 * 1024
    # the bench's A100 case (no GPU model, only the architecture) counts the same as an A100
    assert estimate(told, gpu_architecture="ampere").breakdown.weights_bytes \
        == estimate(told, gpu=A100).breakdown.weights_bytes


def test_torch_only_fsdp_rank():
    """fsdp keeps torch's two workspaces (in the overhead), no TE's: 2 x 23.875 MiB less on an A100."""
    spec = _fsdp()
    on_a100 = estimate(spec, gpu=A100).breakdown.overhead_bytes
    told_ampere = estimate(spec, gpu_architecture="ampere").breakdown.overhead_bytes
    hopper = estimate(spec, gpu_architecture="hopper").breakdown.overhead_bytes
    assert hopper == estimate(spec).breakdown.overhead_bytes            # no GPU: the Hopper size
    assert hopper - told_ampere == 2 * (TORCH_HOPPER - TORCH_AMPERE)
    # the A100 itself also moves its context (stack reservation and the context's own workspace, context.py)
    assert estimate(spec, gpu=A100).breakdown.overhead_bytes == on_a100
    assert mb.torch_workspace_bytes_outside_megatron(spec.training, "ampere") == 2 * TORCH_AMPERE
    assert mb.te_workspace_bytes(spec.training, "hopper") == 0
    # the GPU given wins over an architecture given alone
    assert estimate(spec, gpu=H100, gpu_architecture="ampere").total_bytes == estimate(spec, gpu=H100).total_bytes
