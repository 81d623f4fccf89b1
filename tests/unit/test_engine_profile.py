"""vLLM V1's profile run by release (engines.py): the sampler of its dummy requests, FlashInfer's or PyTorch's native
top-k/top-p sort or Triton kernel (`flashinferSampler`, by default what `pip install vllm` of the release runs), what
the run holds beside it (the forward's hidden states, the fused-MoE workspace, a later pipeline stage's receive buffer),
and the CUDA context, inside the KV cache's budget before 0.9.1."""

from __future__ import annotations

from gpus import H100

from rackfit.catalog.types import GPU
from rackfit.estimator import Layout, estimate
from rackfit.estimator.engine_profile import moe_workspace_bytes
from rackfit.estimator.non_torch import NCCL_NVLINK_GROUP
from rackfit.estimator.sampler import (
    FLASHINFER_SAMPLER_BYTES,
    NATIVE_SAMPLER_BYTES,
    NATIVE_SORT_PEAK_BYTES,
    NATIVE_SORT_TEMP_BYTES,
    sampler_path,
    sampler_peak_bytes,
)
from rackfit.models import resolve
from rackfit.spec import parse_spec

ARCH = {"architecture": {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
                         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 151936}}


def spec(**inference):
    return parse_spec(dict(model=ARCH, workload="inference", inference=dict(contextLength=8192, **inference)))


def pool(**inference):
    return estimate(spec(**inference), Layout(tensor=2), gpu=H100).kv_cache_tokens


def test_native_sampler_holds_28_bytes_a_logit_where_pip_has_no_flashinfer():
    assert (NATIVE_SAMPLER_BYTES, FLASHINFER_SAMPLER_BYTES) == (28, 14)
    assert sampler_path(spec(engineVersion="0.9.2").inference) != "flashinfer"
    assert sampler_path(spec(engineVersion="0.12.0").inference) != "flashinfer"
    assert sampler_path(spec().inference) == "flashinfer"  # current releases: FlashInfer by default
    assert sampler_path(spec(engineVersion="0.7.3").inference) == "sort"  # V0 sorts too (sampler.py _apply_top_k_top_p)
    assert sampler_path(spec(engineVersion="0.7.3", flashinferSampler=True).inference) == "flashinfer"
    assert sampler_path(spec(engineVersion="0.9.2", flashinferSampler=True).inference) == "flashinfer"
    assert sampler_path(spec(flashinferSampler=False).inference) != "flashinfer"
    a, layout = resolve(spec().model), Layout(tensor=2)
    assert sampler_peak_bytes(a, layout, 1024, "sort") == 1024 * 151936 * 38
    # H100 defaults: 1,024 dummy requests; the native sort takes 24 more bytes a logit, less the bf16 shard it outlives
    native, flashinfer = pool(engineVersion="0.9.2"), pool(engineVersion="0.9.2", flashinferSampler=True)
    per_token = 32 * 2 * 4 * 128 * 2
    freed = 1024 * 151936 * 24 - 1024 * (151936 // 2) * 2
    assert abs((flashinfer - native) * per_token - freed) <= 16 * per_token


def test_native_sort_peaks_inside_the_segmented_cub_sort():
    """PyTorch's segmented sort (SortStable.cu segmented_sort_pairs: an int64 reverse index a logit) and CUB's
    temporary storage (an alternate fp32 key and int64 value a logit) live beside the bf16 and fp32 logits and the
    sort's outputs: 38 bytes a logit, above the 28 at the scatter back (vLLM 0.11.0's logs, S40/S45/S46)."""
    assert NATIVE_SORT_TEMP_BYTES == 20 and NATIVE_SORT_PEAK_BYTES == 38
    a = resolve(spec().model)
    assert sampler_peak_bytes(a, Layout(), 1024, "sort") == 1024 * 151936 * 38
    assert sampler_peak_bytes(a, Layout(), 1024, "sort") > 1024 * 151936 * NATIVE_SAMPLER_BYTES


def test_sampler_path_by_release():
    """topk_topp_sampler.py: FlashInfer opt-in (VLLM_USE_FLASHINFER_SAMPLER unset: None) through 0.20.0, the default
    from 0.21.0 (envs.py); the native path sorts before 0.17.0 and masks in place with apply_top_k_top_p_triton from
    it, for batches of 8 or more."""
    path = {v: sampler_path(spec(engineVersion=v).inference, 1024)
            for v in ("0.7.3", "0.9.2", "0.13.0", "0.16.0", "0.17.0", "0.19.0", "0.20.0", "0.21.0")}
    assert path == {"0.7.3": "sort", "0.9.2": "sort", "0.13.0": "sort", "0.16.0": "sort", "0.17.0": "triton",
                    "0.19.0": "triton", "0.20.0": "triton", "0.21.0": "flashinfer"}
    assert sampler_path(spec().inference, 1024) == "flashinfer"
    assert sampler_path(spec(flashinferSampler=False, engineVersion="0.21.0").inference, 1024) == "triton"
    # the current release's new runner: Triton masking and Gumbel draws (vllm_runner.V2_RUNNER)
    assert sampler_path(spec(flashinferSampler=False).inference, 1024) == "gumbel"
    assert sampler_path(spec(engineVersion="0.19.0").inference, 4) == "sort"  # apply_top_k_top_p: below 8 rows
    assert sampler_path(spec(engineVersion="0.19.0", flashinferSampler=True).inference, 1024) == "flashinfer"


def test_triton_sampler_holds_14_bytes_a_logit_and_a_row_per_sm():
    """apply_top_k_top_p_triton masks the fp32 logits in place: the bf16 logits (2), the fp32 logits (4), the softmax
    (4) and random_sample's draws (4), and a buffer of min(next_power_of_2(batch), SMs) fp32 rows (132 on an H100,
    108 on an A100); no bf16 shard of tensor parallel outlives compute_logits (0.19.0 logs 1.89 GiB at tensor 1, 2
    and 4 alike for Llama 3.1 8B)."""
    a = resolve(spec().model)
    v = 151936
    assert sampler_peak_bytes(a, Layout(), 1024, "triton", H100) == 1024 * v * 14 + 132 * v * 4
    assert sampler_peak_bytes(a, Layout(tensor=4), 1024, "triton", H100) == 1024 * v * 14 + 132 * v * 4
    a100 = GPU(model="A100", product="A100-SXM4-80GB", memoryGB=80, memoryMiB=81920, architecture="ampere")
    assert sampler_peak_bytes(a, Layout(), 1024, "triton", a100) == 1024 * v * 14 + 108 * v * 4
    assert sampler_peak_bytes(a, Layout(), 20, "triton", H100) == 20 * v * 14 + 32 * v * 4
    # on an H100 at tensor 2, 0.19.0 holds 14 bytes a logit and 132 rows where 0.16.0 sorted at 38
    per_token = 32 * 2 * 4 * 128 * 2
    saved = 1024 * v * 24 - 132 * v * 4
    # ...less PyNccl's communicator, which 0.16.0's profile does not count and 0.19.0's does (vllm_tp.py)
    saved -= NCCL_NVLINK_GROUP // 2
    assert abs((pool(engineVersion="0.19.0") - pool(engineVersion="0.16.0")) * per_token - saved) <= 16 * per_token


def test_profile_run_holds_the_forwards_hidden_states_from_0_9_2():
    """0.9.2's _dummy_run returns the whole forward's hidden states beside the sampled rows, and profile_run keeps both
    through the sampler run; 0.9.1 returned the sampled rows only. From 0.9.0 _dummy_sampler_run samples a random copy
    of those rows (torch.rand_like), which 0.8.5 did not."""
    per_token = 32 * 2 * 4 * 128 * 2
    held = 8192 * 4096 * 2
    assert abs((pool(engineVersion="0.9.1") - pool(engineVersion="0.9.2")) * per_token - held) <= 16 * per_token
    rows = 1024 * 4096 * 2
    old, new = (estimate(spec(engineVersion=v, flashinferSampler=True), Layout(tensor=2), gpu=H100)
                for v in ("0.8.5", "0.9.0"))
    assert new.breakdown.activations_bytes - old.breakdown.activations_bytes == rows


MOE = {"architecture": {"numLayers": 48, "hiddenSize": 2048, "intermediateSize": 6144, "numAttentionHeads": 32,
                        "numKeyValueHeads": 4, "headDim": 128, "vocabSize": 151936, "numExperts": 128,
                        "numExpertsPerToken": 8, "moeIntermediateSize": 768}}


def test_moe_workspace_is_held_through_the_sampler_from_0_14():
    """From 0.14.0 the fused-MoE layers take their workspaces from the WorkspaceManager, which keeps them: Qwen3-30B-A3B
    at 8,192 tokens holds workspace13 (M, 8, max(768, 2048)) and workspace2 (M, 8, max(1536, 2048)) in bf16, 0.5 GiB,
    beside the sampler (0.19.0 logs 2.68 GiB of activation peak on one H100)."""
    a = resolve(parse_spec(dict(model=MOE, workload="inference", inference=dict(contextLength=8192))).model)
    workspace = 8192 * 8 * (2048 + 2048) * 2
    assert moe_workspace_bytes(a, Layout(), 8192) == workspace
    assert moe_workspace_bytes(a, Layout(tensor=4), 8192) == workspace  # 192-wide experts: K = 2048 bounds both
    assert moe_workspace_bytes(resolve(spec().model), Layout(), 8192) == 0

    def act(version):
        s = parse_spec(dict(model=MOE, workload="inference", inference=dict(contextLength=8192, engineVersion=version,
                                                                             flashinferSampler=False)))
        return estimate(s, Layout(), gpu=H100).breakdown.activations_bytes
    assert act("0.14.0") - act("0.13.0") == workspace
    # 0.19.0: the Triton sampler (14 B a logit, 132 rows), the held hidden states and sampled rows, the workspace
    assert act("0.19.0") == 1024 * 151936 * 14 + 132 * 151936 * 4 + (8192 + 2 * 1024) * 2048 * 2 + workspace


def test_later_pipeline_stages_hold_the_intermediate_tensors_buffer():
    """_dummy_run allocates the IntermediateTensors a stage after the first receives into (hidden states and residual of
    max_num_tokens) and keeps it: 0.19.0 logs 2.01 GiB of activation peak on Llama 3.1 8B's last stage at pipeline 2
    and 4, 1.89 GiB without pipeline."""
    def act(**par):
        s = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", parallelism=par,
                            inference=dict(contextLength=8192, engineVersion="0.19.0")))
        return estimate(s, gpu=H100).breakdown.activations_bytes
    assert act(pipeline=2) - act() == 2 * 8192 * 4096 * 2
    assert act(pipeline=4) == act(pipeline=2)


def test_cuda_context_is_inside_the_budget_before_0_9_1():
    context = estimate(spec(), Layout(tensor=2), gpu=H100).breakdown.overhead_bytes
    per_token = 32 * 2 * 4 * 128 * 2
    old, new = pool(engineVersion="0.9.0", flashinferSampler=True), pool(engineVersion="0.9.1", flashinferSampler=True)
    assert abs((new - old) * per_token - context) <= 16 * per_token
