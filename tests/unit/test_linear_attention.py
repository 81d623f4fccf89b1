"""Hybrid linear-attention / Mamba models under vLLM V1 (estimator/linear_attention.py): the state's bytes from
mamba_utils.py's shapes, the raised attention block size, the groups and the logged token count."""

from gpus import H100, L40S

from rackfit.estimator import Layout, estimate
from rackfit.estimator.linear_attention import (
    attention_block_tokens,
    linear_kv_groups,
    mamba_blocks_refusal,
    prefix_caching,
    state_bytes,
    vllm_linear_blocks,
    vllm_linear_kv,
)
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import Inference, ModelSource, parse_spec

QWEN3_NEXT = {"model_type": "qwen3_next", "hidden_size": 2048, "num_hidden_layers": 48, "vocab_size": 151936,
              "head_dim": 256, "num_attention_heads": 16, "num_key_value_heads": 2, "intermediate_size": 5120,
              "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 512,
              "shared_expert_intermediate_size": 512, "linear_num_key_heads": 16, "linear_key_head_dim": 128,
              "linear_num_value_heads": 32, "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4,
              "full_attention_interval": 4, "tie_word_embeddings": False}


def _next():
    return resolve(ModelSource(preset="qwen3-next-80b-a3b"))


def test_hf_config_reads_gated_deltanet_layers():
    arch = architecture_from_hf_config(QWEN3_NEXT)
    assert arch.linear_attention_layers == 36  # 48 - 48 // 4
    assert (arch.linear_num_key_heads, arch.linear_num_value_heads, arch.linear_key_head_dim,
            arch.linear_value_head_dim, arch.linear_conv_kernel_dim) == (16, 32, 128, 128, 4)
    assert not arch.linear_state_float32
    qwen35 = dict(QWEN3_NEXT, layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 8, num_hidden_layers=32,
                  mamba_ssm_dtype="float32")
    arch = architecture_from_hf_config({"model_type": "qwen3_5", "text_config": qwen35})
    assert arch.linear_attention_layers == 24 and arch.linear_state_float32


def test_hf_config_reads_mamba2_layers():
    granite = {"model_type": "granitemoehybrid", "num_hidden_layers": 4, "hidden_size": 1536, "vocab_size": 100352,
               "num_attention_heads": 12, "intermediate_size": 4096, "layer_types": ["mamba", "mamba", "mamba",
                                                                                      "attention"],
               "mamba_n_heads": 48, "mamba_d_head": 64, "mamba_n_groups": 1, "mamba_d_state": 128, "mamba_d_conv": 4}
    arch = architecture_from_hf_config(granite)
    assert (arch.linear_attention_layers, arch.linear_num_key_heads, arch.linear_num_value_heads,
            arch.linear_key_head_dim, arch.linear_value_head_dim, arch.linear_conv_kernel_dim) == (3, 1, 48, 128, 64, 4)


def test_gated_deltanet_state_bytes_by_hand():
    # gated_delta_net_state_shape: conv (4 - 1) x (2 x 16 x 128 + 32 x 128) / tp, temporal 32 / tp x 128 x 128; bf16
    assert state_bytes(_next(), 1) == (3 * 8192 + 32 * 128 * 128) * 2 == 1_097_728
    assert state_bytes(_next(), 4) == (3 * 2048 + 8 * 128 * 128) * 2 == 274_432
    f32 = _next().model_copy(update={"linear_state_float32": True})
    assert state_bytes(f32, 1) == 3 * 8192 * 2 + 32 * 128 * 128 * 4


def test_mamba2_groups_replicated_below_tensor():
    # mamba2_state_shape: n_groups 1 at tp 4 gains 3 (extra_groups_for_head_shards): 4 x 2 x 128 / 4 a rank
    arch = resolve(ModelSource(architecture={"numLayers": 4, "hiddenSize": 1536, "intermediateSize": 4096,
                                             "numAttentionHeads": 12, "vocabSize": 1000, "linearAttentionLayers": 3,
                                             "linearNumKeyHeads": 1, "linearNumValueHeads": 48,
                                             "linearKeyHeadDim": 128, "linearValueHeadDim": 64,
                                             "linearConvKernelDim": 4}))
    assert state_bytes(arch, 4) == ((3072 + 2 * 4 * 128) // 4 * 3 + 12 * 64 * 128) * 2


def test_block_size_raised_to_hold_a_state():
    # _align_hybrid_block_size: 16 x cdiv(1,097,728, 16 x 2 x 2 x 256 x 2) = 16 x 34 = 544 at tp 1; 272 at tp 4
    assert attention_block_tokens(_next(), 1, 2048) == 544
    assert attention_block_tokens(_next(), 4, 1024) == 16 * -(-274_432 // (16 * 1024)) == 272


def test_groups_and_tokens():
    assert linear_kv_groups(_next(), 1, 1.5) == (12, 1, 3)  # 12 full + 36 linear: groups of 12
    per_token, request = vllm_linear_kv(_next(), 2048, 1, 1, 32768, 1.5, False)
    assert per_token == 2048 * 12 * 4  # num_blocks // 4 groups x block: 48 attention layers' worth a token
    assert request == 12 * 544 * 2048 * (-(-32768 // 544) + 3)  # 61 pages in the full group, 1 in each linear one
    per_token, _ = vllm_linear_kv(_next(), 2048, 1, 1, 32768, 1.5, True)
    assert per_token == -(-request // 32768)  # 0.21.0+: max_concurrency x max_model_len


def test_unset_fields_change_nothing():
    arch = resolve(ModelSource(preset="qwen3-30b-a3b"))
    assert arch.linear_attention_layers == 0
    assert architecture_from_hf_config({"num_hidden_layers": 2, "hidden_size": 64}).linear_attention_layers is None


def test_linear_layer_and_gate_weights():
    # Qwen3NextGatedDeltaNet: 2048 x (4096 + 8192) + 2048 x 64 + 8192 x 4 + 64 + 128 + 4096 x 2048
    from rackfit.estimator.linear_attention import linear_layer_params
    from rackfit.estimator.params import attention_params, linear_layer_params_delta
    a = _next()
    assert linear_layer_params(a) == 33_718_464
    assert linear_layer_params_delta(a, attention_params(a)) == 36 * (33_718_464 - 18_874_368) + 12 * 2048 * 4096
    assert architecture_from_hf_config(QWEN3_NEXT).attention_output_gate


# Qwen3-Next at tensor 4: a 272-token block of 1,024 bytes a token a layer, groups of 12 layer slots
NEXT_TP4_BLOCK_BYTES = 272 * 1024 * 12


def test_blocks_are_the_pool_over_page_and_group_size():
    # get_num_blocks: available_memory // page_size // group_size
    assert vllm_linear_blocks(_next(), 1024, 4, 1, 134 * NEXT_TP4_BLOCK_BYTES, 1.5) == 134
    assert vllm_linear_blocks(_next(), 1024, 4, 1, 134 * NEXT_TP4_BLOCK_BYTES - 1, 1.5) == 133
    assert vllm_linear_blocks(_next(), 1024, 4, 1, -1, 1.5) == 0


def test_max_num_seqs_above_the_mamba_blocks_is_refused_from_0_20_with_graphs():
    pool = 134 * NEXT_TP4_BLOCK_BYTES  # S902's count: "max_num_seqs (256) exceeds available Mamba cache blocks (134)"
    why = mamba_blocks_refusal(Inference(engineVersion="0.24.0"), _next(), 1024, 4, 1, pool, 1.5, 256)
    assert why and "256 exceeds the 134 Mamba cache blocks" in why
    assert mamba_blocks_refusal(Inference(engineVersion="0.24.0"), _next(), 1024, 4, 1, pool, 1.5, 134) is None
    assert mamba_blocks_refusal(Inference(engineVersion="0.19.1"), _next(), 1024, 4, 1, pool, 1.5, 256) is None
    eager = Inference(engineVersion="0.24.0", cudaGraphs=False)
    assert mamba_blocks_refusal(eager, _next(), 1024, 4, 1, pool, 1.5, 256) is None
    dense = resolve(ModelSource(preset="qwen3-30b-a3b"))
    assert mamba_blocks_refusal(Inference(engineVersion="0.24.0"), dense, 1024, 4, 1, 0, 1.5, 256) is None


def _coder_next(**inference):
    # S902-S903's setup, their native sampler included
    spec = parse_spec({"model": {"preset": "qwen3-next-80b-a3b"}, "workload": "inference",
                       "inference": dict(contextLength=16384, engineVersion="0.24.0", gpuMemoryUtilization=0.9,
                                         prefixCaching=True, flashinferSampler=False, **inference)})
    return estimate(spec, Layout(tensor=4), gpu=L40S)


def test_qwen3_coder_next_on_four_l40s_needs_fewer_sequences():
    # S902-S903: the default 256 sequences are refused at graph capture, 128 start
    refused = _coder_next()
    assert not refused.engine_starts
    assert any("Mamba cache blocks" in n for n in refused.notes)
    assert _coder_next(maxNumSeqs=128).engine_starts


def test_prefix_caching_is_on_by_default_for_hybrids_from_0_28():
    # EngineArgs: 0.27.1 kept hybrids opt-in ("... and not model_config.is_hybrid"), 0.28.0 takes
    # is_prefix_caching_supported, True for them; a spec's own setting wins, an unset release is a current one
    assert not prefix_caching(Inference(engineVersion="0.27.1"))
    assert prefix_caching(Inference(engineVersion="0.28.0")) and prefix_caching(Inference())
    assert not prefix_caching(Inference(engineVersion="0.29.0", prefixCaching=False))
    assert prefix_caching(Inference(engineVersion="0.27.1", prefixCaching=True))


def _qwen38_27b(version: str, **inference):
    # S1803's shape and setup: 64 layers, 16 full (4 KV heads of 256), 48 Gated DeltaNet (16/48 heads, fp32 state)
    arch = {"numLayers": 64, "hiddenSize": 5120, "intermediateSize": 17408, "numAttentionHeads": 24,
            "numKeyValueHeads": 4, "headDim": 256, "vocabSize": 248320, "qkNorm": True, "maxPositionEmbeddings": 262144,
            "linearAttentionLayers": 48, "linearNumKeyHeads": 16, "linearNumValueHeads": 48, "linearKeyHeadDim": 128,
            "linearValueHeadDim": 128, "linearConvKernelDim": 4, "linearStateFloat32": True,
            "attentionOutputGate": True}
    spec = parse_spec({"model": {"architecture": arch}, "workload": "inference",
                       "inference": dict(contextLength=8192, engineVersion=version, gpuMemoryUtilization=0.9,
                                         maxNumSeqs=256, **inference)})
    return estimate(spec, Layout(tensor=1), gpu=H100)


def test_default_prefix_caching_costs_each_linear_group_a_second_block_a_request():
    # S1803 (0.29.0, the report's 652 blocks of 784): 38.35x = 652 / (cdiv(8192, 784) + 3 groups x 2 'align' blocks);
    # without prefix caching a request would draw 11 + 3 blocks
    assert round(652 / (-(-8192 // 784) + 3 * 2), 2) == 38.35
    default, align, none = (_qwen38_27b("0.29.0"), _qwen38_27b("0.29.0", prefixCaching=True),
                            _qwen38_27b("0.29.0", prefixCaching=False))
    assert default.kv_cache_tokens == align.kv_cache_tokens < none.kv_cache_tokens
    assert default.kv_cache_pool_bytes == none.kv_cache_pool_bytes  # the pool is the same, a request draws more
    assert abs(none.kv_cache_tokens / align.kv_cache_tokens - 17 / 14) < 0.01
    assert _qwen38_27b("0.27.1").kv_cache_tokens == _qwen38_27b("0.27.1", prefixCaching=False).kv_cache_tokens
