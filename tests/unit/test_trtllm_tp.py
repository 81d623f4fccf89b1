"""TensorRT-LLM at tensor parallel (issue 22; docs/accuracy.md "TensorRT-LLM at tensor parallel"): the TRT-engine
backend holds one NCCL communicator per tensor group (getComm's commMap), one of the two that the NVLink price was
set on (vLLM: PyNccl and torch's process group; serving_nccl.py), and row S340
(tensorrtllm_backend issue 576, Llama 3 8B int4 AWQ at tensor 2 on H100) checked by hand."""

from __future__ import annotations

from gpus import L40S

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.non_torch import NCCL_NVLINK_GROUP, NCCL_PER_PEER, NON_TORCH_BASE
from rackfit.estimator.pcie_serving import pcie_comm_bytes
from rackfit.estimator.serving_nccl import non_torch_bytes
from rackfit.estimator.trtllm import engine_allreduce_workspace_bytes
from rackfit.spec import parse_spec

GiB = 1 << 30
MiB = 1 << 20
H100 = GPU(model="H100", product="H100", memoryGB=81559 / 954, memoryMiB=81559, architecture="hopper")
TRT = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                      inference=dict(engine="tensorrt-llm", tensorrtLlmBackend="trt"))).inference
PYT = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                      inference=dict(engine="tensorrt-llm"))).inference


def engine_non_torch_bytes(layout, gpu):
    return non_torch_bytes(TRT, layout, gpu, False)


def test_one_rank_holds_no_nccl():
    assert engine_non_torch_bytes(Layout(), H100) == NON_TORCH_BASE == non_torch_bytes(PYT, Layout(), H100, False)


def test_nvlink_group_is_one_communicator_of_two():
    # over NVLink vLLM's two communicators cost NCCL_NVLINK_GROUP whatever the group's size; the engine's one, half
    for t in (2, 4, 8):
        assert engine_non_torch_bytes(Layout(tensor=t), H100) == NON_TORCH_BASE + NCCL_NVLINK_GROUP // 2
    assert NON_TORCH_BASE + NCCL_NVLINK_GROUP // 2 == 107_374_182 + 977_105_059


def test_pcie_one_communicator_priced_by_nccl_buffers():
    # over PCIe the engine's one communicator is priced as vLLM's and SGLang's are (pcie_serving.pcie_comm_bytes):
    # S3's half at 2 ranks, the second neighbour's 2 channels x (10 + 2) MiB from 3 ranks on, flat beyond. It was
    # half the old per-peer count (3 x NCCL_PER_PEER / 2 at tensor 4, 0.70 GiB at 8), which pcie_serving replaced
    assert engine_non_torch_bytes(Layout(tensor=2), L40S) == NON_TORCH_BASE + NCCL_PER_PEER // 2
    for t in (4, 8):
        assert engine_non_torch_bytes(Layout(tensor=t), L40S) == NON_TORCH_BASE + NCCL_PER_PEER // 2 + 24 * MiB
    # the PyTorch backend keeps two (PyNccl-like and torch's count, not read for it)
    assert non_torch_bytes(PYT, Layout(tensor=4), L40S, False) == NON_TORCH_BASE + 2 * pcie_comm_bytes(4)


def test_allreduce_workspace_at_tensor_2():
    # C++ runtime: 16,000,000 bytes at tp <= 2, an IPC buffer and three Lamport copies per peer, 256 B barriers a peer
    assert engine_allreduce_workspace_bytes(Layout(tensor=2), H100) == 4 * 16_000_000 * 2 + 256 * 2
    assert engine_allreduce_workspace_bytes(Layout(tensor=2), L40S) == 0


def s340():
    # Meta-Llama-3-8B-Instruct: llama-3.1-8b's shape with Llama 3's 8,192 positions (the engine's rotary table)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b", architecture=dict(maxPositionEmbeddings=8192)),
                           workload="inference", precision="int4",
                           parallelism=dict(tensor=2),
                           inference=dict(engine="tensorrt-llm", tensorrtLlmBackend="trt", contextLength=8000,
                                          maxNumBatchedTokens=4096, maxNumSeqs=8,
                                          tensorrtLlmParallelEmbedding=True)))


def test_s340_block_arithmetic():
    # a 64-token block of Llama 3 8B at tensor 2: 32 layers x (K, V) x 4 KV heads a rank x 128 x fp16 = 4 MiB;
    # "Number of blocks in KV cache primary pool: 17210" is 67.23 GiB, 1,101,440 tokens; 0.9 x the logged
    # "available: 74.69 GiB" is 17,208 blocks, 74.695 (the print's rounding) 17,209: the two more are the memory
    # pool's free bytes, which calculateFreeMemBytes adds to what the line prints (as in issue 2268's log)
    block = 64 * 32 * 2 * 4 * 128 * 2
    assert block == 4 * MiB
    assert 17210 * 64 == 1_101_440
    assert round(17210 * block / GiB, 2) == 67.23
    assert int(0.9 * 74.69 * GiB) // block == 17208
    assert int(0.9 * 74.695 * GiB) // block == 17209


def test_s340_within_a_percent_and_below():
    est = estimate(s340(), gpu=H100)
    assert est.engine_starts
    # the engine's weights: "TensorRT-managed allocation ... now: GPU 2723 (MiB)" (int4 AWQ, embedding and lm_head
    # split over the two ranks), rackfit 2,735.5 MiB with the engine's 4 MiB float32 rotary table
    # (trtllm.engine_rotary_table_bytes; 2,731.5 without it)
    assert abs(est.breakdown.weights_bytes / MiB - 2723) < 15
    # NCCL one communicator (0.91 GiB over NVLink) + cuBLAS base + the 128 MB all-reduce workspace
    assert est.breakdown.non_torch_bytes == (NON_TORCH_BASE + NCCL_NVLINK_GROUP // 2
                                             + engine_allreduce_workspace_bytes(Layout(tensor=2), H100))
    logged = 1_101_440
    assert -0.01 < (est.kv_cache_tokens - logged) / logged < 0
