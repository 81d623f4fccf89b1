"""vLLM's fused-MoE workspace held between layers (engine_profile.MOE_WORKSPACE_HELD, forward_peak_bytes,
moe_held_widths): from 0.14.0 FusedMoEModularKernel._allocate_buffers takes workspace13/workspace2 from the
process-wide WorkspaceManager (v1/worker/workspace.py get_simultaneous), one buffer grown to the largest request and
freed only at shutdown, so every layer after the first MoE layer runs its transient on top of it. Bytes by hand from
TritonExperts.workspace_shapes: (M, top_k, max(N / 2, K)) + (M, top_k, max(N, K)) in bf16."""

from rackfit.estimator.engine_profile import forward_peak_bytes, moe_held_widths, moe_interleaved, moe_workspace_bytes
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource

TOKENS = 8192
# meta-llama/Llama-4-Maverick's text_config: Scout's shape with 128 experts and interleave_moe_layer_step 2
MAVERICK = {"model_type": "llama4", "text_config": {
    "model_type": "llama4_text", "num_hidden_layers": 48, "hidden_size": 5120, "intermediate_size": 8192,
    "intermediate_size_mlp": 16384, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
    "vocab_size": 202048, "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
    "max_position_embeddings": 1048576}}


def _mixtral():
    return resolve(ModelSource(preset="mixtral-8x7b"))


def _maverick():
    return resolve(ModelSource(huggingFaceConfig="meta-llama/Llama-4-Maverick-17B-128E-Instruct"), MAVERICK)


def test_mixtral_workspace_by_hand():
    # tensor 2: expert width 14,336 / 2 = 7,168, N = 14,336, K = 4,096, top-2, M = 8,192 (no chunk in 0.19.0)
    ws = moe_workspace_bytes(_mixtral(), Layout(tensor=2), TOKENS)
    assert ws == TOKENS * 2 * (7168 + 14336) * 2 == 704_643_072


def test_mixtral_attention_runs_on_the_held_workspace():
    layout = Layout(tensor=2)
    # attention at tensor 2: q 2,048 + k and v 2 x 512 + output 2,048 = 5,120 a token, beside the residual and its
    # normed copy
    attention = TOKENS * (2 * 4096 + 5120) * 2
    ws = 704_643_072
    assert forward_peak_bytes(_mixtral(), layout, TOKENS, Inference(engineVersion="0.19.0")) == attention + ws
    # 0.13.0 called fused_experts directly (its caches freed per layer): the MoE layer's own peak, the residual's
    # 2 x 4,096, cache13 + cache2 (8,192 x 2 x (14,336 + 7,168) x 2 B), router logits (8 x 2 B) and fused_topk's
    # three 4-byte outputs per top-k copy
    moe = TOKENS * 2 * 4096 * 2 + TOKENS * 2 * (14336 + 7168) * 2 + TOKENS * 8 * 2 + TOKENS * 2 * 12
    assert forward_peak_bytes(_mixtral(), layout, TOKENS, Inference(engineVersion="0.13.0")) == moe == 839_188_480
    # from 0.14.0 the attention on the workspace (922,746,880 B) is above the MoE layer's peak
    assert attention + ws == 922_746_880 > moe


def test_dense_layers_under_the_workspace_only_after_a_moe_layer():
    a = _maverick()
    assert moe_interleaved(a) and a.first_dense_layers == 24
    widths = [1408, 6144]
    assert moe_held_widths(a, 8, widths) == [1408, 3 * 16384 / 8]
    # DeepSeek's first_k_dense_replace layers run before any MoE layer: only attention sits on the workspace
    deepseek = resolve(ModelSource(preset="deepseek-v3"))
    assert not moe_interleaved(deepseek) and moe_held_widths(deepseek, 8, [9999, 6144]) == [9999]


def test_maverick_dense_mlp_on_the_held_workspace_by_hand():
    layout = Layout(tensor=8)
    # expert width 8,192 / 8 = 1,024, N 2,048, K 5,120, top-1: 8,192 x (5,120 + 5,120) x 2 B
    ws = TOKENS * 1 * (5120 + 5120) * 2
    assert moe_workspace_bytes(_maverick(), layout, TOKENS) == ws == 167_772_160
    # the interleaved dense MLP (gate/up 2 x 16,384 / 8 and its activation 16,384 / 8 = 6,144 a token) on it
    dense = TOKENS * (2 * 5120 + 6144) * 2 + ws
    # the MoE layer: residual, workspace, 128 router logits, fused_topk's outputs, the shared expert's output
    moe = TOKENS * 2 * 5120 * 2 + ws + TOKENS * 128 * 2 + TOKENS * 12 + TOKENS * 5120 * 2
    assert (dense, moe) == (436_207_616, 421_625_856)
    assert forward_peak_bytes(_maverick(), layout, TOKENS, Inference(engineVersion="0.19.0")) == dense


def _gpu(arch):
    from rackfit.catalog.types import GPU
    return GPU(model="X", product="X", memoryGB=80, memoryMiB=81559, architecture=arch)


def test_gpt_oss_mxfp4_on_hopper_holds_no_workspace():
    from rackfit.estimator.engine_profile import moe_workspace_held
    a, inf = resolve(ModelSource(preset="gpt-oss-120b-mxfp4")), Inference(engineVersion="0.19.0")
    # TRITON backend: triton_kernel_moe_forward (0.14-0.18), OAITritonMxfp4ExpertsMonolithic (0.19-0.34), whose
    # FusedMoEKernelMonolithicImpl takes nothing from the WorkspaceManager; it needs dp_size 1
    assert not moe_workspace_held(inf, a, Layout(), _gpu("hopper"))
    assert moe_workspace_held(inf, a, Layout(data=2), _gpu("hopper"))
    # Ampere has no triton_kernels path (SM90-SM10x): MarlinExperts, a modular kernel, whose workspace_shapes
    # (M x top_k x max(N, K), M x top_k x max(2N, K)) are the same bytes: 8,192 x 4 x (2,880 + 5,760) x 2 B
    assert moe_workspace_held(inf, a, Layout(), _gpu("ampere"))
    # 0.14.0-0.16.x: Marlin called fused_marlin_moe directly (torch.empty caches); from 0.17.0 MarlinExperts in a
    # FusedMoEKernel. Hopper before 0.19.0: triton_kernel_moe_forward whatever the data parallel
    assert not moe_workspace_held(Inference(engineVersion="0.16.0"), a, Layout(), _gpu("ampere"))
    assert moe_workspace_held(Inference(engineVersion="0.17.0"), a, Layout(), _gpu("ampere"))
    assert not moe_workspace_held(Inference(engineVersion="0.18.0"), a, Layout(data=2), _gpu("hopper"))
    assert moe_workspace_bytes(a, Layout(), TOKENS) == TOKENS * 4 * (2880 + 5760) * 2 == 566_231_040
    assert not moe_workspace_held(Inference(engineVersion="0.13.0"), _mixtral(), Layout(), _gpu("hopper"))
    hopper = forward_peak_bytes(a, Layout(), TOKENS, inf, gpu=_gpu("hopper"))
    ampere = forward_peak_bytes(a, Layout(), TOKENS, inf, gpu=_gpu("ampere"))
    # attention (64 heads of 64: q 4,096, k and v 2 x 512, output 4,096) on the residual's 2 x 2,880, then on the
    # workspace where it is held; on Hopper the MoE layer's own peak is the larger
    attention = TOKENS * (2 * 2880 + 4096 + 1024 + 4096) * 2
    assert ampere == attention + 566_231_040 and hopper < ampere
