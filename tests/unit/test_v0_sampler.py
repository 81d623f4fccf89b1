"""vLLM V0's profile sampler by release (estimator/sampler.py v0_sort_path): the int64 argsort re-sort before 0.2.6,
the sort of bf16 logits before 0.5.5 (no `logits.to(torch.float)` in Sampler.forward), the fp32 logits' gather
through an inverse index until 0.6.2, then the fp32 sort (V0_SORT_SAMPLER)."""

from __future__ import annotations

from gpus import H100

from rackfit.estimator import Layout, estimate, sampler
from rackfit.estimator.sampler import (
    NATIVE_SORT_PEAK_BYTES,
    V0_ARGSORT_PEAK_BYTES,
    V0_BF16_SORT_PEAK_BYTES,
    V0_GATHER_PEAK_BYTES,
    sampler_path,
    sampler_peak_bytes,
)
from rackfit.models import resolve
from rackfit.spec import parse_spec

ARCH = {"architecture": {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
                         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 128256}}


def spec(**inference):
    return parse_spec(dict(model=ARCH, workload="inference", inference=dict(contextLength=4096, **inference)))


def test_v0_sampler_path_by_release():
    """sampler.py's _apply_top_p_top_k re-sorts by torch.argsort through 0.2.5 and by an inverse-index scatter from
    0.2.6; Sampler.forward casts the logits to fp32 from 0.5.5; the re-sort scatters the sorted logits straight back
    from 0.6.2. VLLM_USE_V1=0 on a later release takes the last."""
    path = {v: sampler_path(spec(engineVersion=v).inference, 256)
            for v in ("0.2.0", "0.2.5", "0.2.6", "0.3.3", "0.5.4", "0.5.5", "0.6.1", "0.6.2", "0.7.3")}
    assert path == {"0.2.0": "v0-argsort", "0.2.5": "v0-argsort", "0.2.6": "v0-bf16-sort", "0.3.3": "v0-bf16-sort",
                    "0.5.4": "v0-bf16-sort", "0.5.5": "v0-gather", "0.6.1": "v0-gather", "0.6.2": "sort",
                    "0.7.3": "sort"}
    assert sampler_path(spec(engineVersion="0.10.0", vllmUseV1=False).inference, 256) == "sort"


def test_v0_flashinfer_sampler_from_0_5_5():
    """The 0.5.4 and older sampler.py import no FlashInfer: flashinferSampler cannot take it there."""
    assert sampler_path(spec(engineVersion="0.5.4", flashinferSampler=True).inference, 256) == "v0-bf16-sort"
    assert sampler_path(spec(engineVersion="0.5.5", flashinferSampler=True).inference, 256) == "flashinfer"


def test_v0_sort_bytes_a_logit():
    """58 at the argsort (an int64 sort beside the first sort's outputs, softmax, cumsum and masks), 30 at the bf16
    sort, 40 at the inverse-index gather of fp32 logits, 38 at the fp32 sort."""
    assert (V0_ARGSORT_PEAK_BYTES, V0_BF16_SORT_PEAK_BYTES, V0_GATHER_PEAK_BYTES, NATIVE_SORT_PEAK_BYTES) == (
        58, 30, 40, 38)
    a = resolve(spec().model)
    for path, per_logit in (("v0-argsort", 58), ("v0-bf16-sort", 30), ("v0-gather", 40), ("sort", 38)):
        assert sampler_peak_bytes(a, Layout(tensor=2), 256, path) == 256 * 128256 * per_logit


def test_v0_bf16_sort_leaves_more_cache_than_the_fp32_sort(monkeypatch):
    """0.5.4's profile peaks in the bf16 sort: 8 bytes a logit under the fp32 sort, over its 256 dummy sequences."""
    def pool():
        return estimate(spec(engineVersion="0.5.4"), Layout(), gpu=H100).kv_cache_tokens

    bf16 = pool()
    monkeypatch.setattr(sampler, "v0_sort_path", lambda inf: "sort")
    fp32 = pool()
    per_token = 32 * 2 * 8 * 128 * 2
    assert abs((bf16 - fp32) * per_token - 256 * 128256 * 8) <= 16 * per_token
