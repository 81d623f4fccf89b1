"""vLLM V0 0.7.2-0.7.3 pads each MLA cache entry to 256 bytes (engines.py MLA_ALIGN): CacheEngine.get_cache_block_size
rounds key_cache_entry (1 x 576 for DeepSeek) up with align_to_256bytes(extent, model_config.dtype), 128 elements for a
16-bit model, so a DeepSeek-V3 token costs 61 x 640 x 2 bytes, not 61 x 576 x 2. 0.7.1 and 0.8.0 on do not, nor
does V1. Bench row S1710 (DeepSeek-R1 on 8 x H200 under 0.7.3) logs 21.43 GiB for 18,418 blocks: 78,086 bytes a
token."""

from gpus import H100

from rackfit.estimator import Layout
from rackfit.estimator.engines import MLA_ALIGN, MLA_ALIGN_BYTES, mla_align_elements, serve
from rackfit.estimator.kvcache import kv_bytes_per_token_layer
from rackfit.models import resolve
from rackfit.spec import parse_spec


def spec(version: str, **inference):
    return parse_spec(dict(model=dict(preset="deepseek-v3-fp8"), workload="inference", parallelism=dict(tensor=8),
                           inference=dict(contextLength=4096, engineVersion=version, **inference)))


def per_token(version: str, **inference) -> int:
    s = spec(version, **inference)
    return serve(s.inference, resolve(s.model), Layout(tensor=8), 0, 0, H100).per_token


def test_the_releases_that_align():
    assert MLA_ALIGN == ((0, 7, 2), (0, 8, 0))
    assert MLA_ALIGN_BYTES == 256


def test_v073_pads_the_latent_to_640():
    assert per_token("0.7.3") == 61 * 640 * 2 == 78_080
    assert per_token("0.7.2") == 78_080
    # S1710's log: 21.43 GiB / (18,418 blocks x 16 tokens) = 78,086 bytes a token
    assert abs(21.43 * 2**30 / (18_418 * 16) - 78_080) < 10


def test_the_releases_around_it_cache_the_bare_latent():
    assert per_token("0.7.1") == 61 * 576 * 2
    assert per_token("0.8.0", vllmUseV1=False) == 61 * 576 * 2
    assert per_token("0.8.0") == 61 * 576 * 2


def test_alignment_is_in_the_model_dtype_elements():
    assert mla_align_elements(spec("0.7.3").inference, "bf16") == 128
    assert mla_align_elements(spec("0.7.3").inference, "fp32") == 64
    assert mla_align_elements(spec("0.8.5").inference, "bf16") is None
    a = resolve(spec("0.7.3").model)
    # an fp8 cache keeps the 128-element padding of the bf16 model: 640 bytes
    assert kv_bytes_per_token_layer(a, "fp8", 8, mla_align=128) == 640
    assert kv_bytes_per_token_layer(a, "bf16", 8, mla_align=None) == 576 * 2
