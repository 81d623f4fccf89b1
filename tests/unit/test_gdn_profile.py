"""A Gated DeltaNet layer in vLLM's profile run (estimator/linear_attention.py gdn_profile_width, engine_profile.py
forward_peak_bytes): the FLA chunk kernels return early without attention metadata, so the layer holds its projections,
and in a MoE hybrid it runs on top of the fused-MoE workspace the earlier layers left held."""

from rackfit.estimator.engine_profile import forward_peak_bytes, moe_workspace_bytes
from rackfit.estimator.linear_attention import gated_delta_net, gdn_profile_width
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource

TOKENS = 8192


def _next():
    return resolve(ModelSource(preset="qwen3-next-80b-a3b"))


def _qwen38_27b():
    # S470's text shape: 64 layers of 5,120, every 4th full attention (24 heads, 4 KV heads of 256, output gate),
    # 48 Gated DeltaNet layers of 16 key / 48 value heads of 128; a dense MLP of 17,408
    return resolve(ModelSource(architecture={
        "numLayers": 64, "hiddenSize": 5120, "intermediateSize": 17408, "numAttentionHeads": 24,
        "numKeyValueHeads": 4, "headDim": 256, "vocabSize": 248320, "linearAttentionLayers": 48,
        "linearNumKeyHeads": 16, "linearNumValueHeads": 48, "linearKeyHeadDim": 128, "linearValueHeadDim": 128,
        "linearConvKernelDim": 4, "linearStateFloat32": True, "attentionOutputGate": True}))


def test_gdn_told_from_mamba_hybrids():
    assert gated_delta_net(_next())
    granite = resolve(ModelSource(architecture={"numLayers": 4, "hiddenSize": 1536, "intermediateSize": 4096,
                                                "numAttentionHeads": 12, "vocabSize": 1000,
                                                "linearAttentionLayers": 3, "linearNumKeyHeads": 1,
                                                "linearNumValueHeads": 48, "linearKeyHeadDim": 128,
                                                "linearValueHeadDim": 64, "linearConvKernelDim": 4}))
    assert not gated_delta_net(granite)
    assert not gated_delta_net(resolve(ModelSource(preset="qwen3-30b-a3b")))


def test_gdn_width_by_hand():
    # Qwen3-Next at tp 1: in_proj_qkvz 2 x 2,048 + 2 x 4,096 = 12,288; ba 64 and the b/a copies 64; core_attn_out and
    # the gated norm's output 4,096 each; out_proj's result and the output buffer 2,048 each
    assert gdn_profile_width(_next(), 1) == 12288 + 64 + 64 + 4096 + 4096 + 2048 + 2048 == 24704
    # at tp 4: 4 key and 8 value heads a rank; the hidden-wide tensors stay whole
    assert gdn_profile_width(_next(), 4) == (1024 + 2048) + 16 + 16 + 1024 + 1024 + 4096 == 9248
    # S470 at tp 2: 8 key / 24 value heads: 2,048 + 6,144 + 48 + 48 + 3,072 x 2 + 5,120 x 2
    assert gdn_profile_width(_qwen38_27b(), 2) == 24672


def test_moe_hybrid_forward_stacks_gdn_on_held_workspace():
    a, layout = _next(), Layout()
    inf = Inference(engineVersion="0.24.0")
    ws = moe_workspace_bytes(a, layout, TOKENS)
    # TritonExperts' workspaces: 8,192 x 10 x (max(512, 2,048) + max(1,024, 2,048)) x 2 B = 640 MiB
    assert ws == TOKENS * 10 * (2048 + 2048) * 2 == 640 << 20
    gdn = TOKENS * (2 * 2048 + 24704) * 2
    assert forward_peak_bytes(a, layout, TOKENS, inf) == gdn + ws
    # before the workspace was held (0.13.0) the GDN layer runs alone, below the MoE layer's own peak
    old = forward_peak_bytes(a, layout, TOKENS, Inference(engineVersion="0.13.0"))
    assert old < gdn + ws and old >= gdn


def test_dense_hybrid_mlp_still_widest_and_others_unchanged():
    # S470: the GDN layer's 24,672 a token stays under the MLP's 3 x 17,408 / 2 = 26,112, so nothing moves
    a, layout = _qwen38_27b(), Layout(tensor=2)
    assert forward_peak_bytes(a, layout, TOKENS, Inference(engineVersion="0.27.1")) == \
        TOKENS * (2 * 5120 + 26112) * 2
    # the same model with a narrower MLP: the GDN layer sets the peak
    narrow = a.model_copy(update={"intermediate_size": 8192})
    assert forward_peak_bytes(narrow, layout, TOKENS, Inference(engineVersion="0.27.1")) == \
        TOKENS * (2 * 5120 + 24672) * 2
    # without an engine (CUDA graph pieces, other callers) nothing changes
    assert forward_peak_bytes(narrow, layout, TOKENS) == TOKENS * (2 * 5120 + 3 * 8192 // 2) * 2


def _gpu(model, arch):
    from rackfit.catalog.types import GPU
    return GPU(model=model, product=model, memoryGB=32, memoryMiB=32607, architecture=arch)


def test_flashinfer_workspace_in_graph_estimate():
    from rackfit.estimator.cuda_graphs import FLASHINFER_WORKSPACE_BYTES, flashinfer_graph_workspace_bytes
    # envs.py VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE: 394 x 1024 x 1024 bytes
    assert FLASHINFER_WORKSPACE_BYTES == 413_138_944
    fp8 = Inference(engineVersion="0.24.0", kvCachePrecision="fp8")
    # an fp8 KV cache off Hopper refuses FLASH_ATTN (FA3 only on SM90): FlashInfer, its workspace in the estimate
    assert flashinfer_graph_workspace_bytes(fp8, _gpu("RTX 5090", "blackwell")) == 413_138_944
    assert flashinfer_graph_workspace_bytes(fp8, _gpu("RTX 3090", "ampere")) == 413_138_944
    assert flashinfer_graph_workspace_bytes(fp8, _gpu("H100", "hopper")) == 0
    # a bf16 cache: FLASH_ATTN first below SM100, FlashInfer first on SM100
    bf16 = Inference(engineVersion="0.24.0")
    assert flashinfer_graph_workspace_bytes(bf16, _gpu("RTX 5090", "blackwell")) == 0
    assert flashinfer_graph_workspace_bytes(bf16, _gpu("B200", "blackwell")) == 413_138_944
    # no CUDA graphs, or speculative decoding (FlashInfer's FULL support is single-token decode: PIECEWISE only)
    assert flashinfer_graph_workspace_bytes(Inference(engineVersion="0.24.0", kvCachePrecision="fp8",
                                                      cudaGraphs=False), _gpu("RTX 5090", "blackwell")) == 0
    assert flashinfer_graph_workspace_bytes(Inference(engineVersion="0.24.0", kvCachePrecision="fp8",
                                                      speculativeMethod="mtp", speculativeTokens=3),
                                            _gpu("RTX 5090", "blackwell")) == 0


def test_bare_hybrid_architecture_is_recurrent():
    from rackfit.estimator.cuda_graphs import graphs_unbudgeted
    from rackfit.estimator.vllm_runner import recurrent, v2_runner
    a = _qwen38_27b()
    assert recurrent(a)
    # 0.27.x leaves hybrids on the old runner, whose graph estimate is in the budget
    inf = Inference(engineVersion="0.27.1")
    assert not v2_runner(inf, a) and not graphs_unbudgeted(inf, a)
