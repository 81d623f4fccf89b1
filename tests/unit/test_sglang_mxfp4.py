"""gpt-oss's MXFP4 experts in SGLang by release and GPU (estimator/weights.py `mxfp4_sglang_backend`,
`mxfp4_sglang_expert_factor`): flashinfer_mxfp4 on Blackwell (hidden to 256; width to 256 before 0.5.17, 128 from it),
triton_kernel elsewhere (width to 32 before 0.5.10, 64 from it; on Hopper the values tiled and the scales kept
twice, the swizzled copy's rows padded to 256), biases fp32 on both. Every expected value is the byte count of the
tensors SGLang's Mxfp4MoEMethod keeps, computed by hand for gpt-oss-120b (128 experts of 2880, hidden 2880)."""

from __future__ import annotations

import pytest

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.weights import mxfp4_sglang_backend, mxfp4_sglang_expert_factor
from rackfit.models import resolve
from rackfit.spec import Inference, ModelSource, parse_spec

E, H, W = 128, 2880, 2880
LOGICAL = 3 * E * H * W // 2 + 3 * E * H * W // 32     # one layer's experts as the checkpoint stores them


def _arch():
    return resolve(ModelSource(preset="gpt-oss-120b-mxfp4"))


def _factor(gpu: str, release: str | None, tensor: int = 1) -> float:
    inf = Inference(engine="sglang", engineVersion=release) if release else Inference(engine="sglang")
    return mxfp4_sglang_expert_factor(_arch(), tensor, tensor, gpu, inf)


def test_backend_by_gpu():
    assert mxfp4_sglang_backend("blackwell") == "flashinfer"
    assert mxfp4_sglang_backend("hopper") == mxfp4_sglang_backend(None) == "triton_hopper"
    assert mxfp4_sglang_backend("ampere") == mxfp4_sglang_backend("ada") == "triton"


def test_blackwell_flashinfer_by_release():
    """0.5.3-0.5.16: width and hidden 3072; from 0.5.17 width 2944 (128), hidden still 3072 (FusedMoE's 256)."""
    bias = lambda w, h: E * (2 * w + h) * 4     # noqa: E731  fp32 w13/w2 biases at the padded sizes
    old = 3 * E * 3072 * 3072 // 2 + 3 * E * 3072 * 3072 // 32 + bias(3072, 3072)
    assert _factor("blackwell", "0.5.3") == pytest.approx(old / LOGICAL)
    assert _factor("blackwell", "0.5.16") == pytest.approx(old / LOGICAL)
    new = 3 * E * 2944 * 3072 // 2 + 3 * E * 2944 * 3072 // 32 + bias(2944, 3072)
    assert _factor("blackwell", "0.5.17") == pytest.approx(new / LOGICAL)
    assert _factor("blackwell", None) == pytest.approx(new / LOGICAL)    # unset: a current SGLang


def test_hopper_triton_kernel_keeps_scales_twice():
    """Tensor 1: the width 2880 is whole under 32 and 64; values tiled (16 rows, 32 bytes: 1440 is 45 x 32);
    scales kept (3 x E x 2880 x 90) plus the swizzled copy, rows to 256 (5760 -> 5888, 2880 -> 3072)."""
    values = 3 * E * W * H // 2
    scales = 3 * E * W * H // 32 + E * (5888 * 90 + 3072 * 90)
    bias = E * (2 * W + H) * 4
    assert _factor("hopper", "0.5.4") == pytest.approx((values + scales + bias) / LOGICAL)
    assert _factor("hopper", None) == pytest.approx((values + scales + bias) / LOGICAL)


def test_triton_width_by_release_at_tensor_8():
    """Tensor 6: 480 columns a rank, whole under the MX block (32) before 0.5.10, 512 under 64 from it; on Ampere
    triton_kernels keeps a strided layout, so values and scales once."""
    arch = _arch()
    old = Inference(engine="sglang", engineVersion="0.5.9")
    new = Inference(engine="sglang", engineVersion="0.5.10")
    width = lambda w: E * (3 * w * H // 2 + 3 * w * H // 32 + (2 * w + H) * 4)     # noqa: E731  Ampere: no copy
    logical = 3 * E * 480 * H // 2 + 3 * E * 480 * H // 32
    assert mxfp4_sglang_expert_factor(arch, 6, 6, "ampere", old) == pytest.approx(width(480) / logical)
    assert mxfp4_sglang_expert_factor(arch, 6, 6, "ampere", new) == pytest.approx(width(512) / logical)
    unset = Inference(engine="sglang")     # a current SGLang: 64
    assert mxfp4_sglang_expert_factor(arch, 6, 6, "ampere", unset) == pytest.approx(width(512) / logical)


def test_weights_follow_the_factor_and_expert_parallel_stays_bf16():
    gpu = GPU(model="g", product="g", memoryGB=200, memoryMiB=190000, architecture="blackwell")

    def weights(release: str, arch: str = "blackwell", expert: int = 1) -> int:
        g = gpu.model_copy(update={"architecture": arch})
        spec = parse_spec(dict(model={"preset": "gpt-oss-120b-mxfp4"}, workload="inference", precision="mxfp4",
                               parallelism={"tensor": expert, "expert": expert},
                               inference={"engine": "sglang", "contextLength": 8192, "engineVersion": release}))
        return estimate(spec, gpu=g).breakdown.weights_bytes

    # 36 layers: 0.5.16 stores 3 x E x 128 x 3072 more values and scales a layer than 0.5.17, 2 x E x 128 biases
    diff = 36 * (3 * E * 128 * 3072 // 2 + 3 * E * 128 * 3072 // 32 + 2 * E * 128 * 4)
    assert weights("0.5.16") - weights("0.5.17") == pytest.approx(diff, abs=64)
    # Hopper with expert parallel 4: bf16 experts (upcast_from_mxfp), far above Blackwell's MXFP4
    assert weights("0.5.17", "hopper", expert=4) > 3 * weights("0.5.17", "blackwell", expert=4)
