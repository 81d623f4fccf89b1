"""vLLM before 0.7.0 cached DeepSeek's MLA as full K and V heads padded to 256 (engines.py MLA_UNPADDED):
ModelConfig.get_head_size returned 256 for deepseek_v2/deepseek_v3 and CacheEngine.get_cache_block_size sizes each of
K and V at num_kv_heads x get_head_size(). 0.7.0 cached them at qk_nope + qk_rope (192); 0.7.1 the latent."""

from gpus import H100

from rackfit.estimator import Layout, estimate
from rackfit.estimator.engines import MLA_PADDED_HEAD, MLA_UNPADDED, serve
from rackfit.estimator.kvcache import kv_bytes_per_token_layer, kv_cache_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

# DeepSeek-Coder-V2-Instruct (DeepSeek-V2's 236B shape), as bench row S500 states it
CODER_V2 = dict(numLayers=60, hiddenSize=5120, intermediateSize=12288, numAttentionHeads=128, numKeyValueHeads=128,
                headDim=128, vocabSize=102400, numExperts=160, numExpertsPerToken=6, moeIntermediateSize=1536,
                numSharedExperts=2, firstDenseLayers=1, kvLoraRank=512, qLoraRank=1536, qkRopeHeadDim=64,
                qkNopeHeadDim=128, vHeadDim=128, maxPositionEmbeddings=163840)


def spec(version: str, tensor: int = 8, model: dict | None = None, context: int = 4096, **inference):
    return parse_spec(dict(model=model or dict(architecture=CODER_V2), workload="inference",
                           parallelism=dict(tensor=tensor),
                           inference=dict(contextLength=context, engineVersion=version, **inference)))


def per_token(version: str, tensor: int = 8, model: dict | None = None) -> int:
    s = spec(version, tensor, model)
    return serve(s.inference, resolve(s.model), Layout(tensor=tensor), 0, 0, None).per_token


def test_the_release_that_stopped_padding():
    assert MLA_UNPADDED == (0, 7, 0)
    assert MLA_PADDED_HEAD == 256


def test_v054_caches_deepseek_v2_at_256_a_head():
    # 60 layers x (128 heads / 8) x 256 x (K + V) x 2 bytes = 983,040 B a token a rank (960 KiB), not 720 KiB at 192
    assert per_token("0.5.4") == 60 * 16 * 256 * 2 * 2 == 983_040
    assert per_token("0.6.6") == 983_040
    assert per_token("0.5.4", tensor=4) == 60 * 32 * 256 * 2 * 2


def test_v070_caches_at_qk_head_dim_and_v071_the_latent():
    assert per_token("0.7.0") == 60 * 16 * (128 + 64) * 2 * 2 == 737_280
    assert per_token("0.7.1") == 60 * (512 + 64) * 2


def test_kvcache_head_size_override():
    a = resolve(spec("0.5.4").model)
    assert kv_bytes_per_token_layer(a, "bf16", 8, mla_latent=False, mla_head_size=256) == 16 * 256 * 2 * 2
    assert kv_bytes_per_token_layer(a, "fp8", 8, mla_latent=False, mla_head_size=256) == 16 * 256 * 2
    # the head size is for the full-head cache only: the latent ignores it
    assert kv_bytes_per_token_layer(a, "bf16", 8, mla_latent=True, mla_head_size=256) == (512 + 64) * 2
    lay = Layout(tensor=8)
    assert kv_cache_bytes(a, "bf16", lay, 1000, 2, 512, mla_latent=False, mla_head_size=256) \
        == 60 * 1000 * 2 * 16 * 256 * 2 * 2


def test_non_mla_models_are_untouched_before_070():
    llama = dict(preset="llama-3.1-8b")
    assert per_token("0.5.4", tensor=1, model=llama) == 32 * 2 * 8 * 128 * 2


def test_s500_64k_needs_more_than_the_gpu_left():
    """S500 (vLLM PR 4650): 64,000 tokens on 8 x H100 at 0.95 did not start. At 960 KiB a token that is 58.6 GiB of
    cache, far over what is left beside 55 GiB of weights; even 30,000 tokens (27.5 GiB) exceed the whole GPU less the
    weights, so the "runs" the same user reports at 30,000 had another setting."""
    tokens = 64_000
    assert per_token("0.5.4") * tokens > 58 * 2**30
    assert per_token("0.5.4") * 30_000 > 27 * 2**30
    e = estimate(spec("0.5.4", context=tokens, gpuMemoryUtilization=0.95, cudaGraphs=False), gpu=H100)
    assert not e.engine_starts
    # whole 16-token blocks of 983,040 B a token (CacheEngine.get_cache_block_size)
    assert e.kv_cache_tokens == e.kv_cache_pool_bytes // (16 * per_token("0.5.4")) * 16
    # the whole GPU (utilization 1.0) at 30,000 tokens still holds fewer than 30,000
    s = spec("0.5.4", context=30_000, gpuMemoryUtilization=1.0, cudaGraphs=False)
    assert estimate(s, gpu=H100).kv_cache_tokens < 30_000
