"""gpt-oss's MXFP4 experts in vLLM by release, GPU and tensor degree (estimator/weights.py `mxfp4_vllm_backend`,
`mxfp4_vllm_expert_factor`): the backend get_mxfp4_backend picks, create_weights' padding, the Triton layout's
padding (vendored triton_kernels' HopperMXValueLayout, which pre-pads to 64 bytes in 0.17.0-0.21.x), the scales
Triton keeps twice and the experts' biases (bf16 under Marlin, fp32 under Triton and FlashInfer). Every expected
value is the byte count of the tensors vLLM allocates, computed by hand for gpt-oss-120b (128 experts of 2880,
hidden 2880, 36 layers)."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.weights import (
    mxfp4_align,
    mxfp4_vllm_backend,
    mxfp4_vllm_expert_factor,
)
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource, parse_spec

GiB = 1 << 30
E, H, W, LAYERS = 128, 2880, 2880, 36
# the checkpoint's bytes of one layer's experts: 4-bit values and one E8M0 scale per 32
LOGICAL = 3 * E * H * W // 2 + 3 * E * H * W // 32
GPT_OSS_20B = {"preset": "gpt-oss-120b-mxfp4",
               "architecture": {"numLayers": 24, "numExperts": 32, "slidingWindowLayers": 12}}


def _arch():
    return resolve(ModelSource(preset="gpt-oss-120b-mxfp4"))


def _weights(arch: str, tensor: int = 1, release: str | None = None, model=None, **inference) -> int:
    gpu = GPU(model="g", product="g", memoryGB=200, memoryMiB=190000, architecture=arch)
    inf = {"contextLength": 8192, **({"engineVersion": release} if release else {}), **inference}
    spec = parse_spec(dict(model=model or {"preset": "gpt-oss-120b-mxfp4"}, workload="inference", precision="mxfp4",
                           parallelism={"tensor": tensor}, inference=inf))
    return estimate(spec, gpu=gpu).breakdown.weights_bytes


def test_backend_by_gpu_and_release():
    """get_mxfp4_backend: Hopper takes Triton once the wheel vendors triton_kernels (0.12.0), Marlin before (a pip
    install has no triton_kernels); Blackwell takes FlashInfer, except 0.10.2-0.11.0, whose wheel made FlashInfer an
    extra (Marlin then, unless FlashInfer is installed, as flashinfer_sampler says); Ampere always Marlin."""
    v = Inference
    assert mxfp4_vllm_backend("hopper", v(engineVersion="0.11.0")) == "marlin"
    assert mxfp4_vllm_backend("hopper", v(engineVersion="0.12.0")) == "triton"
    assert mxfp4_vllm_backend("hopper", v()) == "triton"
    assert mxfp4_vllm_backend("ampere", v()) == mxfp4_vllm_backend("ada", v()) == "marlin"
    assert mxfp4_vllm_backend("blackwell", v()) == "flashinfer"
    assert mxfp4_vllm_backend("blackwell", v(engineVersion="0.10.1")) == "flashinfer"
    assert mxfp4_vllm_backend("blackwell", v(engineVersion="0.10.2")) == "marlin"
    assert mxfp4_vllm_backend("blackwell", v(engineVersion="0.11.0")) == "marlin"
    assert mxfp4_vllm_backend("blackwell", v(engineVersion="0.11.0", flashinfer_sampler=True)) == "flashinfer"
    assert mxfp4_vllm_backend("blackwell", v(engineVersion="0.11.1")) == "flashinfer"
    assert mxfp4_align("vllm", "blackwell", v(engineVersion="0.11.0")) == (128, 256)
    assert mxfp4_align("vllm", "blackwell", v(engineVersion="0.11.1")) == (256, 256)


def test_triton_on_hopper_one_layer_by_hand():
    """Triton, tensor 1, 0.14.1: values (E, 2W, H/2) and (E, H, W/2) as stored (gpt-oss's shapes fill the 16 x 32
    tiles), the checkpoint's scales kept plus the swizzled copy with N rounded to 256, fp32 biases (E, 2W) + (E, H)."""
    values = E * 2 * W * (H // 2) + E * H * (W // 2)
    scales = E * (2 * W + H) * (H // 32) + E * (5888 * 90 + 3072 * 90)
    biases = E * (2 * W + H) * 4
    stored = values + scales + biases
    assert stored == 1_799_700_480
    f = mxfp4_vllm_expert_factor(_arch(), 1, 1, "triton", Inference(engineVersion="0.14.1"))
    assert f == pytest.approx(stored / LOGICAL, rel=1e-12)
    # without the biases: the factor rackfit had (values and both copies of the scales)
    assert mxfp4_vllm_expert_factor(_arch(), 1, 1, "triton", biases=False) == pytest.approx((stored - biases) / LOGICAL,
                                                                             rel=1e-12)


def test_triton_value_prepad_in_0_17_to_0_21():
    """0.17.0-0.21.x: HopperMXValueLayout pre-pads (K / 2, N) to 64: the packed hidden size of w13 and the packed
    width of w2, 1,440 bytes, become 1,472; 0.16.0 and 0.22.0 pad only to the mma tiles (none for gpt-oss)."""
    grown = E * 2 * W * (1472 - 1440) + E * H * (1472 - 1440)
    a = _arch()
    for old, new in (("0.16.0", "0.17.0"), ("0.22.0", "0.21.0")):
        d = (mxfp4_vllm_expert_factor(a, 1, 1, "triton", Inference(engineVersion=new))
             - mxfp4_vllm_expert_factor(a, 1, 1, "triton", Inference(engineVersion=old)))
        assert d * LOGICAL == pytest.approx(grown, rel=1e-9)
    assert _weights("hopper", release="0.19.0") - _weights("hopper", release="0.14.1") == \
        pytest.approx(LAYERS * grown, abs=8)
    # tensor 2: the width 1440 rounds to 1472 (create_weights), its packed 736 bytes to 768 in 0.19.0
    w2 = 1472
    values = E * 2 * w2 * 1472 + E * H * 768
    scales = E * (2 * w2 * 90 + H * (w2 // 32)) + E * (3072 * 90 + 3072 * (w2 // 32))  # kept + swizzled
    stored = values + scales + E * (2 * w2 + H) * 4
    f = mxfp4_vllm_expert_factor(a, 2, 2, "triton", Inference(engineVersion="0.19.0"))
    assert f == pytest.approx(stored / (LOGICAL / 2), rel=1e-12)


def test_marlin_one_layer_by_hand():
    """Marlin (Hopper before 0.12.0, Ampere, Ada): width to 128 and hidden to 256 for values and scales, bf16
    biases of the padded sizes; repacking makes new tensors of the same sizes (prepare_moe_fp4_layer_for_marlin)."""
    stored = (E * 5888 * 1536 + E * 3072 * 1472          # values
              + E * 5888 * 96 + E * 3072 * 92             # E8M0 scales
              + E * (5888 + 3072) * 2)                    # bf16 biases
    assert stored == 1_847_263_232
    assert mxfp4_vllm_expert_factor(_arch(), 1, 1, "marlin") == pytest.approx(stored / LOGICAL, rel=1e-12)


def test_flashinfer_tensor_8_by_hand():
    """FlashInfer on Blackwell at tensor 8: the width 360 rounds to 512 and the hidden size to 3072, fp32 biases."""
    per_expert = 3 * 512 * 3072 // 2 + 3 * 512 * 3072 // 32 + (2 * 512 + 3072) * 4
    logical = 3 * 360 * H // 2 + 3 * 360 * H // 32
    f = mxfp4_vllm_expert_factor(_arch(), 8, 8, "flashinfer")
    assert f == pytest.approx(per_expert / logical, rel=1e-12)
    # the whole estimate, Blackwell 0.11.0 without FlashInfer: Marlin's padding, less than FlashInfer's
    assert _weights("blackwell", 8, "0.11.0") < _weights("blackwell", 8, "0.11.1")
    assert _weights("blackwell", 8, "0.11.0", flashinfer_sampler=True) == _weights("blackwell", 8, "0.11.1")


def test_logged_weights_come_out_within_a_tenth_of_a_gib():
    """"Model loading took": gpt-oss-120b on one H100, 65.97 GiB (0.10.1, Marlin, issue 23278) and 64.38 GiB
    (0.14.1, Triton, issue 33155); gpt-oss-20b on one H100 at 0.19.0 (Triton with the pre-pad), 13.64 GiB at tensor 1
    and 7.01 at tensor 2 (llm-d-planner PR 205's logs); on one A100 at 0.19.0 (Marlin), 13.72 GiB."""
    assert _weights("hopper", release="0.10.1") / GiB == pytest.approx(65.97, abs=0.1)
    assert _weights("hopper", release="0.14.1") / GiB == pytest.approx(64.38, abs=0.1)
    assert _weights("hopper", release="0.19.0", model=GPT_OSS_20B) / GiB == pytest.approx(13.64, abs=0.05)
    assert _weights("hopper", 2, "0.19.0", model=GPT_OSS_20B) / GiB == pytest.approx(7.01, abs=0.05)
    assert _weights("ampere", release="0.19.0", model=GPT_OSS_20B) / GiB == pytest.approx(13.72, abs=0.05)
