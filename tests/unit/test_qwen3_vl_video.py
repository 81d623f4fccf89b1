"""Qwen3-VL's dummy video as vLLM 0.11.0-0.12.x's multimodal profile item (issue 22). Expected values worked by hand
from vLLM 0.11.0's qwen3_vl.py (_get_vision_info, get_max_video_tokens: soft tokens x 12.5, _MAX_FRAMES_PER_VIDEO
24576), qwen2_vl.py (_get_max_video_frames, get_num_frames_with_most_features), transformers' Qwen3-VL video
smart_resize (video_preprocessor_config.json longest_edge 25165824) and v1/worker/gpu_model_runner.py profile_run."""

from __future__ import annotations

from gpus import H100
from vision_configs import QWEN3_VL_8B

from rackfit.estimator import Layout
from rackfit.estimator.engine_defaults import settings
from rackfit.estimator.mm_profile import encoder_cache_bytes, encoder_peak_bytes, mm_profile_items, mm_video_item
from rackfit.models import resolve
from rackfit.models.vision import qwen3_vl_video_item
from rackfit.spec import parse_spec


def parts(context, version, batched=2048):
    s = parse_spec(dict(model={"huggingFaceConfig": "org/model"}, workload="inference",
                        inference=dict(contextLength=context, engineVersion=version, maxNumBatchedTokens=batched)))
    a = resolve(s.model, QWEN3_VL_8B)
    return s.inference, a, settings(s.inference, H100, 1, 1, a)


def test_video_frames_and_tokens():
    # at a long max_model_len no frame count up to 24,576 exceeds it (the video processor keeps t x h x w under
    # 25,165,824 pixels): 24,576 frames of 32 x 32 (beta = sqrt(24576 x 4096^2 / 25165824) = 128), a grid of
    # 12,288 x 2 x 2 = 49,152 patches, 12,288 soft tokens, counted x 12.5 = 153,600
    assert qwen3_vl_video_item(65536, 65536, 16384) == (153600, 49152, 12288)
    # at 8,192 the loop stops at 2 frames (3 frames, padded to 4: 2 x 90 x 90 patches = 4,050 tokens; 2 frames at
    # 3,520 px: 220^2 = 48,400 patches, 12,100 tokens, x 12.5 = 151,250)
    assert qwen3_vl_video_item(8192, 65536, 16384) == (151250, 48400, 12100)


def test_video_is_the_item_in_0_11_and_0_12_only():
    inf, a, s = parts(65536, "0.11.0")
    assert mm_video_item(inf, a, s) == (153600, 49152, 12288)
    assert mm_profile_items(inf, a, s) == 1
    # the one 12,288-row output widened to the 153,600-token budget, 4 x 4096 wide (deepstack), bf16: 4.69 GiB
    assert encoder_cache_bytes(inf, a, s) == 153600 * 16384 * 2
    # the encoder runs over the video's 49,152 patches: residual, normed copy and the MLP's fc1 + activation
    assert encoder_peak_bytes(inf, a, Layout(), s) == \
        int(49152 * (2 * 1152 + 2 * 4304) * 2) + 12288 * 16384 * 2
    inf, a, s = parts(65536, "0.12.0")
    assert mm_video_item(inf, a, s) is not None
    # 0.13.0 dropped the x 12.5: the image (16,384 tokens) is the item again; 0.10.x has the image too
    for version in ("0.13.0", "0.14.1", "0.10.2"):
        inf, a, s = parts(65536, version)
        assert mm_video_item(inf, a, s) is None
        assert encoder_cache_bytes(inf, a, s) == 16384 * 16384 * 2


def test_unversioned_spec_unchanged():
    inf, a, s = parts(65536, None)
    assert mm_video_item(inf, a, s) is None
    assert mm_profile_items(inf, a, s) == 1
