"""Serving with speculative decoding (speculative.py): the drafter's weights (a draft model, an EAGLE/EAGLE-3 head
sharing the target's embedding, an MTP layer), its layers' KV cache in vLLM's one budget, the profile's rejection
sampler, the drafter's CUDA graph pieces; SGLang's larger reserve, its running-request default of 48 and the shared
pool's headroom. Unset: nothing changes. Expected bytes are computed by hand from the engines' shapes."""

from __future__ import annotations

import pytest
from gpus import H100
from pydantic import ValidationError

from rackfit.errors import RackfitError
from rackfit.estimator import Layout
from rackfit.estimator.context import context_before_cublas
from rackfit.estimator.cuda_graphs import GRAPH_PRIVATE_BYTES, cuda_graph_bytes
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.engines import serve
from rackfit.estimator.sampler import sampler_peak_bytes
from rackfit.estimator.sglang import speculative_reserve_mib
from rackfit.estimator.speculative import (
    V0_PEER_CONTEXT_BYTES,
    draft_graph_pieces,
    draft_held_bytes,
    draft_kv_bytes_per_token,
    draft_layers,
    draft_weight_bytes,
    proposals,
    sampler_profile_bytes,
    sglang_extra_tokens,
    sglang_running_default,
    v0_peer_contexts,
)
from rackfit.estimator.vllm_runner import v2_runner
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource, parse_spec

# Llama 3.1 8B's shape
ARCH = {"architecture": {"numLayers": 32, "hiddenSize": 4096, "intermediateSize": 14336, "numAttentionHeads": 32,
                         "numKeyValueHeads": 8, "headDim": 128, "vocabSize": 128256}}
# Llama 3.2 1B's shape as a draft model
DRAFT = {"architecture": {"numLayers": 16, "hiddenSize": 2048, "intermediateSize": 8192, "numAttentionHeads": 32,
                          "numKeyValueHeads": 8, "headDim": 64, "vocabSize": 128256, "tieWordEmbeddings": True}}
H, V = 4096, 128256


def spec(**inference):
    return parse_spec(dict(model=ARCH, workload="inference", inference=dict(contextLength=8192, **inference)))


def arch():
    return resolve(spec().model)


def inf(**kw) -> Inference:
    return spec(**kw).inference


# One dense Llama layer of the target's widths, bf16: q and o 4096 x 4096, k and v 4096 x 1024, gate/up/down
# 3 x 4096 x 14336, two norms of 4096 (count_params of a one-layer model: 2 x 1 + 1 norms)
LAYER = 2 * (2 * H * H + 2 * H * 1024 + 3 * H * 14336 + 3 * H)


def test_eagle_head_weights_share_embedding_and_lm_head():
    # llama_eagle.py: one layer and fc nn.Linear(2h, h), replicated; embedding and lm_head are the target's
    assert draft_weight_bytes(inf(speculativeMethod="eagle"), arch(), Layout()) == LAYER + 2 * 2 * H * H


def test_eagle3_head_weights():
    # llama_eagle3.py: qkv_proj takes 2h (q 4096 + k, v 1024 each more rows of input), fc (3h, h), its own lm_head of
    # 32000 x h and the d2t int64 map, plus the extra norm of h
    expected = LAYER + 2 * (H * (H + 2 * 1024) + 3 * H * H + 32000 * H + H) + 8 * 32000
    assert draft_weight_bytes(inf(speculativeMethod="eagle3"), arch(), Layout()) == expected


def test_eagle_head_split_over_tensor_but_fc_replicated():
    one = draft_weight_bytes(inf(speculativeMethod="eagle"), arch(), Layout())
    two = draft_weight_bytes(inf(speculativeMethod="eagle"), arch(), Layout(tensor=2))
    fc = 2 * 2 * H * H
    # the layer's matrices halve, its norms do not, fc stays whole
    assert two == (LAYER - 2 * 3 * H) // 2 + 2 * 3 * H + fc
    assert one - two == (LAYER - 2 * 3 * H) // 2


def test_draft_model_weights_whole_model():
    # Llama 3.2 1B, tied: embedding 128256 x 2048, 16 layers (attention 2 x 2048^2 + 2 x 2048 x 512, MLP
    # 3 x 2048 x 8192), norms (2 x 16 + 1) x 2048, all bf16
    h = 2048
    params = V * h + 16 * (2 * h * h + 2 * h * 512 + 3 * h * 8192) + 33 * h
    i = inf(speculativeMethod="draft", draftModel=DRAFT)
    assert draft_weight_bytes(i, arch(), Layout()) == 2 * params
    assert draft_held_bytes(i, arch(), Layout()) == 2 * params
    # SGLang loaded its draft worker after sizing the pool before 0.5.14, and counts it from 0.5.14
    old = inf(engine="sglang", engineVersion="0.5.13", speculativeMethod="draft", draftModel=DRAFT)
    new = inf(engine="sglang", engineVersion="0.5.14", speculativeMethod="draft", draftModel=DRAFT)
    assert draft_held_bytes(old, arch(), Layout()) == 0
    assert draft_held_bytes(new, arch(), Layout()) == 2 * params


def test_mtp_layer_keeps_its_own_head():
    # deepseek_mtp.py: eh_proj (2h, h) replicated, shared_head.head of the whole vocabulary over tensor, 3 norms
    a = arch()
    i = inf(speculativeMethod="mtp")
    extra = 2 * (2 * H * H + V * H // 2 + 3 * H)
    assert draft_weight_bytes(i, a, Layout(tensor=2)) == (LAYER - 2 * 3 * H) // 2 + 2 * 3 * H + extra
    assert proposals(i) == 1 and proposals(inf(speculativeMethod="eagle")) == 3


def test_ngram_has_no_weights_layers_or_graphs():
    i = inf(speculativeMethod="ngram")
    assert draft_weight_bytes(i, arch(), Layout()) == 0
    assert draft_layers(i, arch()) == 0
    assert draft_kv_bytes_per_token(i, arch(), Layout()) == 0
    assert draft_graph_pieces(i, arch()) == 0


def test_draft_kv_per_token():
    # an EAGLE head's layer at the target's shape: K and V of 8 heads x 128, bf16 = 4096 bytes
    assert draft_kv_bytes_per_token(inf(speculativeMethod="eagle"), arch(), Layout()) == 2 * 8 * 128 * 2
    # the 1B draft's 16 layers of 8 heads x 64
    assert draft_kv_bytes_per_token(inf(speculativeMethod="draft", draftModel=DRAFT), arch(), Layout()) == \
        16 * 2 * 8 * 64 * 2


def test_vllm_per_token_counts_draft_layers():
    base = serve(inf(), arch(), Layout(), 0, 0, None)
    eagle = serve(inf(speculativeMethod="eagle"), arch(), Layout(), 0, 0, None)
    assert base.per_token == 32 * 4096
    assert eagle.per_token == 33 * 4096
    assert eagle.per_request - base.per_request == 4096 * 8192


def test_rejection_sampler_profile():
    a = arch()
    requests = 1024
    sort = sampler_peak_bytes(a, Layout(), requests, "sort")
    # the sampler's bf16 logits held, then the sort on target_logits (its 38 bytes a logit exceed the 10 of
    # target_logits + fp32 probabilities + q)
    assert sort == requests * V * 38
    assert sampler_profile_bytes(inf(speculativeMethod="eagle"), a, requests, sort) == requests * V * 40
    assert sampler_profile_bytes(inf(speculativeMethod="eagle", engineVersion="0.7.3"), a, requests, sort) == 0
    assert sampler_profile_bytes(inf(engine="sglang", speculativeMethod="eagle"), a, requests, sort) == 0


def test_drafter_graph_pieces():
    a = arch()
    i = inf(speculativeMethod="draft", draftModel=DRAFT)
    assert draft_graph_pieces(inf(speculativeMethod="eagle"), a) == 2
    assert draft_graph_pieces(i, a) == 17
    s = settings(i, H100, 1, 1, a)
    base = cuda_graph_bytes(a, Layout(), s, i, H100)
    more = cuda_graph_bytes(a, Layout(), s, i, H100, 1, 17)
    # 67 sizes at vLLM's default 512 (GRAPH_SIZES stands for them), 17 more pieces each
    assert more - base == pytest.approx(67 * 17 * GRAPH_PRIVATE_BYTES, rel=0.02)


def test_v0_drafter_captures_its_own_graphs():
    # V0's SpecDecodeWorker.initialize_cache runs the MultiStepWorker's initialize_cache after the target's, and its
    # _warm_up_model captures the draft at the target's batch sizes (vllm 0.6.1 spec_decode_worker.py, worker.py)
    a = arch()
    i = inf(speculativeMethod="draft", draftModel=DRAFT, engineVersion="0.6.1")
    assert i.vllm_v0
    assert draft_graph_pieces(i, a) == 17
    assert draft_graph_pieces(inf(speculativeMethod="eagle", engineVersion="0.6.1"), a) == 2
    assert draft_graph_pieces(inf(speculativeMethod="ngram", engineVersion="0.6.1"), a) == 0
    s = settings(i, H100, 1, 1, a)
    base = cuda_graph_bytes(a, Layout(), s, i, H100)
    more = cuda_graph_bytes(a, Layout(), s, i, H100, 1, draft_graph_pieces(i, a))
    # V0's 35 decode batches up to 256 stand for GRAPH_SIZES' 67 at the default, 17 more pieces each
    assert more - base == pytest.approx(67 * 17 * GRAPH_PRIVATE_BYTES, rel=0.02)
    # serve's graph pool carries them; V0's cache is sized before capture, so the pool leaves it as it was
    plain = serve(inf(engineVersion="0.6.1"), a, Layout(), 0, 0, H100)
    drafted = serve(i, a, Layout(), 0, 0, H100)
    assert drafted.cuda_graphs - plain.cuda_graphs == pytest.approx(67 * 17 * GRAPH_PRIVATE_BYTES, rel=0.02)


def test_v0_speculative_peers_open_contexts_on_gpu0():
    # AsyncMetricsCollector's pinned counters, built in SpecDecodeWorker.__init__ before set_device (vllm 0.4.1-0.8.5
    # spec_decode/metrics.py): every other rank opens a context on device 0, 1.4 GB by vllm PR 15886 (issue 8731)
    bare = max(V0_PEER_CONTEXT_BYTES, context_before_cublas(H100))
    assert bare == 1_400_000_000
    drafted = inf(speculativeMethod="draft", draftModel=DRAFT, engineVersion="0.6.1")
    assert v0_peer_contexts(drafted, Layout(tensor=4), H100) == (3 * bare, 0)
    assert v0_peer_contexts(drafted, Layout(tensor=2, pipeline=2), H100) == (3 * bare, 0)
    # the collector is the SpecDecodeWorker's whatever proposes: ngram too
    assert v0_peer_contexts(inf(speculativeMethod="ngram", engineVersion="0.7.3"), Layout(tensor=8), H100) == (
        7 * bare, 0)
    # none alone, none without speculation, none on V1
    assert v0_peer_contexts(drafted, Layout(), H100) == (0, 0)
    assert v0_peer_contexts(inf(engineVersion="0.6.1"), Layout(tensor=4), H100) == (0, 0)
    assert v0_peer_contexts(inf(speculativeMethod="ngram", engineVersion="0.10.0"), Layout(tensor=4), H100) == (0, 0)
    # 0.6.4's profile counts the device's whole non-torch memory: inside the budget there, the cache shrinks by it
    at_064 = inf(speculativeMethod="ngram", engineVersion="0.6.4")
    assert v0_peer_contexts(at_064, Layout(tensor=4), H100) == (0, 3 * bare)
    a = arch()
    alone = serve(at_064, a, Layout(tensor=4), 0, 0, H100)
    tensor1 = serve(at_064, a, Layout(), 0, 0, H100)
    plain = serve(inf(engineVersion="0.6.4"), a, Layout(tensor=4), 0, 0, H100)
    assert plain.kv_pool - alone.kv_pool == 3 * bare
    assert tensor1.kv_pool - serve(inf(engineVersion="0.6.4"), a, Layout(), 0, 0, H100).kv_pool == 0
    # 0.6.1 reads its free memory before them: outside the budget, in what graph capture has left
    refused = serve(inf(speculativeMethod="ngram", engineVersion="0.6.1", gpuMemoryUtilization=0.99), a,
                    Layout(tensor=8), 0, 0, H100).refused
    assert refused is not None and "at CUDA graph capture" in refused
    assert serve(inf(engineVersion="0.6.1", gpuMemoryUtilization=0.99), a, Layout(tensor=8), 0, 0,
                 H100).refused is None


def test_sglang_reserve_and_headroom():
    a = arch()
    base = settings(inf(engine="sglang", engineVersion="0.5.4"), H100, 1, 1, a).gpu_memory_utilization
    eagle = settings(inf(engine="sglang", engineVersion="0.5.4", speculativeMethod="eagle"), H100, 1, 1, a)
    draft = settings(inf(engine="sglang", engineVersion="0.5.4", speculativeMethod="draft", draftModel=DRAFT),
                     H100, 1, 1, a)
    assert eagle.gpu_memory_utilization == round(base - 2048 / 81559, 3)
    assert draft.gpu_memory_utilization == round(base - 6144 / 81559, 3)
    assert speculative_reserve_mib(inf(engine="sglang", engineVersion="0.4.7", speculativeMethod="eagle")) == 0
    assert speculative_reserve_mib(inf(engine="sglang", engineVersion="0.5.10", speculativeMethod="eagle")) == 4096
    assert speculative_reserve_mib(inf(engine="sglang", engineVersion="0.5.14", speculativeMethod="eagle")) == 0
    assert speculative_reserve_mib(inf(engine="sglang", engineVersion="0.5.4", speculativeMethod="ngram")) == 0
    i = inf(engine="sglang", engineVersion="0.5.4", speculativeMethod="eagle", speculativeTokens=3)
    assert sglang_running_default(i) == 48
    # draft_runner_cache_size: 48 x 3 x topk 1 + 48 x (3 + 1) + 100
    assert sglang_extra_tokens(i, 48) == 48 * 3 + 48 * 4 + 100
    assert sglang_extra_tokens(inf(engine="sglang", engineVersion="0.5.4", speculativeMethod="ngram"), 48) == 0
    # from 0.5.7 the draft pool is the target's size: no headroom; before 0.4.6 no 48
    assert sglang_extra_tokens(inf(engine="sglang", engineVersion="0.5.7", speculativeMethod="eagle"), 48) == 0
    assert sglang_running_default(inf(engine="sglang", engineVersion="0.4.5", speculativeMethod="eagle")) is None


def test_sglang_pool_grows_by_headroom_and_running_limit_48():
    a = arch()
    # an explicit fraction keeps the pool's bytes equal; the tokens grow by the headroom of 48 requests
    base = serve(inf(engine="sglang", engineVersion="0.5.4", gpuMemoryUtilization=0.85), a, Layout(), 16 * 2**30, 0,
                 H100)
    eagle = serve(inf(engine="sglang", engineVersion="0.5.4", gpuMemoryUtilization=0.85, speculativeMethod="eagle"),
                  a, Layout(), 16 * 2**30, 0, H100)
    assert eagle.engine_tokens - base.engine_tokens == 48 * 3 + 48 * 4 + 100
    assert eagle.running_limit == 48


def test_sglang_counts_draft_from_0_5_14():
    a = arch()
    w = 16 * 2**30
    base = serve(inf(engine="sglang", engineVersion="0.5.14", gpuMemoryUtilization=0.85), a, Layout(), w, 0, H100)
    eagle = serve(inf(engine="sglang", engineVersion="0.5.14", gpuMemoryUtilization=0.85, speculativeMethod="eagle"),
                  a, Layout(), w, 0, H100)
    head = LAYER + 2 * 2 * H * H
    # the head's weights come out of the pool, whose cell grows by 1/32 (pool_configurator.py); no headroom
    pool = base.kv_pool - head
    assert eagle.kv_pool == pool
    assert eagle.engine_tokens == pool // int(32 * 4096 * (1 + 1 / 32))
    assert eagle.running_limit == 48


def test_unset_and_none_change_nothing():
    a = arch()
    for gpu in (None, H100):
        base = serve(inf(), a, Layout(), 16 * 2**30, 0, gpu)
        assert serve(inf(speculativeMethod="none"), a, Layout(), 16 * 2**30, 0, gpu) == base
        sg = serve(inf(engine="sglang"), a, Layout(), 16 * 2**30, 0, gpu)
        assert serve(inf(engine="sglang", speculativeMethod="none"), a, Layout(), 16 * 2**30, 0, gpu) == sg


@pytest.mark.parametrize("kw", [
    dict(engine="tensorrt-llm", speculativeMethod="eagle"),
    dict(speculativeMethod="draft"),
    dict(speculativeMethod="eagle", draftModel=DRAFT),
    dict(speculativeTokens=3),
    dict(speculativeMethod="none", speculativeTokens=3),
    dict(speculativeMethod="draft", draftModel={"huggingFaceConfig": "draft-config"}),
])
def test_refused(kw):
    with pytest.raises((ValidationError, RackfitError)):
        spec(**kw)


def test_draft_model_and_ngram_speculation_fall_back_to_the_old_runner_by_release():
    """vllm/config/vllm.py _get_v2_model_runner_unsupported_features: draft_model unsupported by the new runner before
    0.31.0, ngram before 0.32.0; EAGLE runs on it."""
    def runner(release: str, **speculative) -> bool:
        return v2_runner(parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference", inference=dict(
            engineVersion=release, **speculative))).inference, resolve(ModelSource(preset="llama-3.1-8b")))

    draft = dict(speculativeMethod="draft", draftModel=dict(preset="llama-3.2-1b"))
    assert runner("0.30.0") and runner("0.30.0", speculativeMethod="eagle")
    assert not runner("0.30.0", **draft) and runner("0.31.0", **draft)
    assert not runner("0.31.0", speculativeMethod="ngram") and runner("0.32.0", speculativeMethod="ngram")
