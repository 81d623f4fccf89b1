"""SGLang's default mem_fraction_static for a multimodal model (engine_defaults.sglang_vlm_factor): x 0.90 in 0.4.9,
from 0.4.10 adjust_mem_fraction_for_vlm by the ViT's num_hidden_layers x hidden_size^2 (24 layers where the config
names none, as Qwen3-VL's, which calls them depth). Expected values worked by hand from server_args.py (0.4.9, 0.4.10,
0.5.10 wheels); S1212 logged mem_fraction_static=0.8388 for Qwen3-VL-8B on an H200 at 0.5.10."""

from __future__ import annotations

import pytest
from vision_configs import QWEN3_VL_8B

from rackfit.catalog.types import GPU
from rackfit.estimator.engine_defaults import settings, sglang_vlm_factor
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
    """0.4.8: no adjustment; 0.4.9: x 0.90 (0.4.8-0.5.2 reserve on an H200: (12 + 0.5) GiB -> 0.911); a
    --mem-fraction-static the user sets is never adjusted."""
    assert _util(VIT, "0.4.8") == 0.911
    assert _util(VIT, "0.4.9") == pytest.approx(0.911 * 0.90)
    assert _util(VIT, "0.5.10", gpuMemoryUtilization=0.8) == 0.8


def test_hf_config_reads_num_hidden_layers_only_where_the_config_names_it():
    """Qwen3-VL's vision_config names its depth `depth`: no num_hidden_layers read, SGLang's 24 stands."""
    assert architecture_from_hf_config(QWEN3_VL_8B).vision_num_hidden_layers is None
    siglip = {**QWEN3_VL_8B, "vision_config": {**QWEN3_VL_8B["vision_config"], "num_hidden_layers": 27}}
    assert architecture_from_hf_config(siglip).vision_num_hidden_layers == 27
