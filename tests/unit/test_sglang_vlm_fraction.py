"""SGLang's default mem_fraction_static for a multimodal model (engine_defaults.sglang_vlm_factor): x 0.90 in 0.4.9,
from 0.4.10 adjust_mem_fraction_for_vlm by the ViT's num_hidden_layers x hidden_size^2 (24 layers where the config
names none, as Qwen3-VL's, which calls them depth). Expected values worked by hand from server_args.py (0.4.9, 0.4.10,
0.5.10 wheels); S1212 logged mem_fraction_static=0.8388 for Qwen3-VL-8B on an H200 at 0.5.10."""

from __future__ import annotations

import pytest
from vision_configs import QWEN3_VL_8B

from rackfit.catalog.types import GPU
from rackfit.estimator import estimate
from rackfit.estimator.engine_defaults import settings, sglang_runner_vlm_factor, sglang_vlm_factor
from rackfit.models import resolve
from rackfit.models.hf_config import architecture_from_hf_config
from rackfit.spec import ModelSource, parse_spec

H200 = GPU(model="H200", product="H200", memoryGB=141, memoryMiB=143771, architecture="hopper")


def _util(arch: dict, version: str, **inf) -> float:
    spec = parse_spec(dict(model=dict(preset="qwen3-8b", architecture=arch), workload="inference",
                           inference=dict(engine="sglang", contextLength=262144, engineVersion=version, **inf)))
    return settings(spec.inference, H200, 1, 1, resolve(spec.model)).gpu_memory_utilization


VIT = dict(visionParameters=573272064, visionHiddenSize=1152)


def test_qwen3_vl_on_h200_matches_the_logged_fraction():
    """0.5.10 on an H200: 512 + 8192 x 1.5 + 256 x 2 + 128 = 13,440 MiB -> 0.907 (piecewise graphs off for a VLM);
    x 0.95 x (1 - 0.1 x (24 x 1152^2 / (24 x 1024^2) - 1)) = 0.95 x 0.9734375 -> 0.8388, S1212's log."""
    assert _util(VIT, "0.5.10") == pytest.approx(0.907 * 0.95 * 0.9734375)
    assert round(_util(VIT, "0.5.10"), 4) == 0.8388
    # the text-only Qwen3-8B keeps the formula's fraction (with piecewise graphs' reserve: 0.903), unscaled
    text = resolve(ModelSource(preset="qwen3-8b"))
    assert sglang_vlm_factor(parse_spec(dict(model=dict(preset="qwen3-8b"), workload="inference",
                                             inference=dict(engine="sglang"))).inference, text) == 1.0
    assert _util({}, "0.5.10") == 0.903


def test_num_hidden_layers_and_the_clamp():
    """A SigLIP-style config naming 27 layers: ratio 27 x 1152^2 / 24 x 1024^2 = 1.423828 -> 0.95 x 0.957617; a
    4096-wide ViT (ratio 16) is clamped at 0.8."""
    a = resolve(ModelSource(preset="qwen3-8b"))
    inf = parse_spec(dict(model=dict(preset="qwen3-8b"), workload="inference",
                          inference=dict(engine="sglang", engineVersion="0.5.10"))).inference
    siglip = a.model_copy(update=dict(vision_parameters=400_000_000, vision_hidden_size=1152,
                                      vision_num_hidden_layers=27))
    assert sglang_vlm_factor(inf, siglip) == pytest.approx(0.95 * (1 - 0.1 * (27 * 1152 ** 2 / (24 * 1024 ** 2) - 1)))
    wide = siglip.model_copy(update=dict(vision_hidden_size=4096, vision_num_hidden_layers=24))
    assert sglang_vlm_factor(inf, wide) == pytest.approx(0.95 * 0.8)


def test_by_release_and_only_for_the_default():
    """0.4.8: no adjustment to the fraction (ModelRunner's x 0.90 comes on the budget, below); 0.4.9: x 0.90
    (0.4.8-0.5.2 reserve on an H200: (12 + 0.5) GiB -> 0.911); a --mem-fraction-static the user sets is never
    adjusted here."""
    assert _util(VIT, "0.4.8") == 0.911
    assert _util(VIT, "0.4.9") == pytest.approx(0.911 * 0.90)
    assert _util(VIT, "0.5.10", gpuMemoryUtilization=0.8) == 0.8


def test_hf_config_reads_num_hidden_layers_only_where_the_config_names_it():
    """Qwen3-VL's vision_config names its depth `depth`: no num_hidden_layers read, SGLang's 24 stands."""
    assert architecture_from_hf_config(QWEN3_VL_8B).vision_num_hidden_layers is None
    siglip = {**QWEN3_VL_8B, "vision_config": {**QWEN3_VL_8B["vision_config"], "num_hidden_layers": 27}}
    assert architecture_from_hf_config(siglip).vision_num_hidden_layers == 27


# Llama-3.2-11B-Vision's text model (S1455), its vision tower and projector counted by hand
MLLAMA = dict(numLayers=40, hiddenSize=4096, intermediateSize=14336, numAttentionHeads=32, numKeyValueHeads=8,
              headDim=128, vocabSize=128256, tieWordEmbeddings=False, maxPositionEmbeddings=131072,
              visionParameters=850000000, visionHiddenSize=1280, visionIntermediateSize=5120)
H100_CI = GPU(model="H100", product="H100", memoryGB=80, memoryMiB=81559, architecture="hopper")


def _mllama(version: str | None, **inf):
    return parse_spec(dict(model=dict(architecture=MLLAMA), workload="inference",
                           inference=dict(engine="sglang", contextLength=131072,
                                          **({"engineVersion": version} if version else {}), **inf)))


def test_model_runner_factor_by_release():
    """ModelRunner.__init__ (model_runner.py): `if self.is_multimodal: self.mem_fraction_static *= 0.95` from 0.3.5
    (0.3.5-0.4.4 wheels), 0.90 from 0.4.5 (0.4.5-0.4.8); none before 0.3.5 (server_args scaled after ModelRunner's
    copy) or from 0.4.9 (server_args' own x 0.90, sglang_vlm_factor); none for a text-only model or unknown release."""
    a = resolve(_mllama(None).model)
    for version, factor in (("0.3.4", 1.0), ("0.3.5", 0.95), ("0.4.4", 0.95), ("0.4.5", 0.90), ("0.4.8", 0.90),
                            ("0.4.9", 1.0), ("0.5.10", 1.0), (None, 1.0)):
        assert sglang_runner_vlm_factor(_mllama(version).inference, a) == factor, version
    text = a.model_copy(update=dict(vision_parameters=None))
    assert sglang_runner_vlm_factor(_mllama("0.4.2").inference, text) == 1.0


def test_s1455_pool_at_0_836():
    """S1455: Llama-3.2-11B-Vision on an H100 at 0.3.5, default 0.88 logged, max_total_num_tokens=298440 (the pool of
    0.88 x 0.95). The set fraction is scaled too; 0.3.4's pool is the unscaled one."""
    logged = 298_440
    at_035 = estimate(_mllama("0.3.5"), gpu=H100_CI).kv_cache_tokens
    assert abs(at_035 - logged) / logged < 0.02
    assert estimate(_mllama("0.3.4"), gpu=H100_CI).kv_cache_tokens > logged * 1.05
    set_08 = estimate(_mllama("0.4.2", gpuMemoryUtilization=0.8), gpu=H100_CI).kv_cache_tokens
    set_08_old = estimate(_mllama("0.3.4", gpuMemoryUtilization=0.8), gpu=H100_CI).kv_cache_tokens
    assert set_08 < set_08_old * 0.95
