"""ModelOpt MIXED_PRECISION checkpoints (vLLM ModelOptMixedPrecisionConfig, quantization/modelopt.py in 0.24.0): each
module's algorithm from `quantized_layers`, the modules not listed unquantized; a Gated DeltaNet layer's projections
by their checkpoint names; nvidia/Qwen3.6-35B-A3B-NVFP4's weights counted by hand from its module list."""

import pytest

from rackfit.estimator.params import count_params
from rackfit.estimator.result import Layout
from rackfit.estimator.weights import weight_bytes
from rackfit.models import resolve
from rackfit.models.quantization import (
    checkpoint_quantization,
    linear_attention_layer,
    projections,
)
from rackfit.spec import ModelSource


def _qwen36():
    return resolve(ModelSource(preset="qwen3.6-35b-a3b-nvfp4"))


def test_full_attention_every_fourth_layer():
    a = _qwen36()
    full = [i for i in range(a.num_layers) if not linear_attention_layer(a, i)]
    assert full == list(range(3, 40, 4)) and len(full) == 10


def test_gated_deltanet_projections_by_checkpoint_name():
    a = _qwen36()
    linear = {p.names[0].rsplit(".", 1)[-1]: (p.out, p.inp) for p in projections(a, 0)["attention"]}
    # in_proj_qkv: 2 x 16 key heads x 128 + 32 value heads x 128; in_proj_z: 32 x 128; b and a: one a value head
    assert linear == {"in_proj_qkv": (8192, 2048), "in_proj_z": (4096, 2048), "in_proj_b": (32, 2048),
                      "in_proj_a": (32, 2048), "out_proj": (2048, 4096)}
    full = {p.names[0].rsplit(".", 1)[-1]: (p.out, p.inp) for p in projections(a, 3)["attention"]}
    # the output gate doubles q_proj: 2 x 16 heads x 256
    assert full == {"q_proj": (8192, 2048), "k_proj": (512, 2048), "v_proj": (512, 2048), "o_proj": (2048, 4096)}


def test_mixed_precision_per_module_bytes():
    a = _qwen36()
    q = a.quantization
    assert q.checkpoint and q.method == "modelopt"
    nvfp4 = 0.5 + 1 / 16                       # two e2m1 a byte + an fp8 scale per 16
    layer0, layer3 = q.layers[0], q.layers[3]
    assert layer0.experts == nvfp4 and layer0.shared == nvfp4 and q.lm_head == nvfp4
    assert layer0.router == 2.0 and q.embedding == 2.0   # not in quantized_layers: bf16
    # linear layer: in_proj_qkv, in_proj_z, out_proj fp8 (+ one fp32 scale each), in_proj_b/a bf16
    fp8 = 8192 * 2048 + 4096 * 2048 + 2048 * 4096
    bf16 = 2 * 32 * 2048
    assert layer0.attention == pytest.approx((fp8 + 3 * 4 + 2 * bf16) / (fp8 + bf16))
    full = 8192 * 2048 + 2 * 512 * 2048 + 2048 * 4096
    assert layer3.attention == pytest.approx((full + 4 * 4) / full)


def test_unlisted_and_unknown_algorithms_stay_unquantized():
    a = _qwen36()
    cfg = {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION",
           "quantized_layers": {"model.language_model.layers.0.mlp.experts": {"quant_algo": "NVFP4", "group_size": 16},
                                "model.language_model.layers.1.mlp.experts": {"quant_algo": "SOMETHING_NEW"}}}
    q = checkpoint_quantization(a, cfg, "bfloat16")
    assert q.layers[0].experts == 0.5625 and q.layers[1].experts == 2.0 and q.layers[2].experts == 2.0
    assert q.layers[0].attention == 2.0 and q.lm_head == 2.0
    with pytest.raises(ValueError):
        checkpoint_quantization(a, {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION"}, "bfloat16")


def test_qwen36_nvfp4_weights_by_hand():
    a = _qwen36()
    p = count_params(a)
    got = weight_bytes(p, "nvfp4", Layout(tensor=1, pipeline=1, data=1, expert=1), a.num_layers, a, "vllm")
    nv = 0.5 + 1 / 16
    experts = 40 * 256 * 3 * 2048 * 512 * nv
    shared = 40 * 3 * 2048 * 512 * nv
    router = 40 * 256 * 2048 * 2
    full = 10 * ((8192 * 2048 + 2 * 512 * 2048 + 2048 * 4096) + 4 * 4)
    linear = 30 * ((8192 * 2048 + 4096 * 2048 + 2048 * 4096) + 3 * 4 + 2 * 32 * 2048 * 2)
    head = 248320 * 2048 * nv
    embedding = 248320 * 2048 * 2
    vision = 446571248 * 2
    hand = experts + shared + router + full + linear + head + embedding + vision
    # what the checkpoint's 23.4 GB holds less its bf16 MTP layer (about 1.69 GB), which vLLM does not load without
    # speculative decoding
    assert 21.7e9 < hand < 21.75e9
    # rackfit adds the norms, the GDN layers' conv1d/A_log/dt_bias (bf16, counted with the attention), the
    # shared_expert_gate and the rotary cache
    assert hand < got < hand + 0.2e9


def _engine(version: str):
    from rackfit.estimator.result import EngineSettings
    from rackfit.spec import Inference
    inf = Inference(engineVersion=version, contextLength=131072, maxNumBatchedTokens=8192, maxNumSeqs=1)
    s = EngineSettings(engine="vllm", gpu_memory_utilization=0.92, max_num_batched_tokens=8192, max_num_seqs=1,
                       max_model_len=131072)
    return inf, s


def test_qwen3_5_vit_pixels_and_block_by_hand():
    from rackfit.estimator.vllm_tp import mm_inputs_held_bytes, qwen3_5_vit, qwen3_vit_extra_bytes
    a = _qwen36()
    assert qwen3_5_vit(a)
    inf, s = _engine("0.24.0")
    # one 16,777,216-pixel image: 65,536 patches of 3 x 2 x 16 x 16 bf16 values
    assert mm_inputs_held_bytes(inf, a, s) == 65536 * 1536 * 2
    # attention 9 x 1,152 against the MLP's 2 x 4,304 counted, plus the (patches, 1,152) position embeddings
    layout = Layout(tensor=1, pipeline=1, data=1, expert=1)
    assert qwen3_vit_extra_bytes(inf, a, layout, s) == int(65536 * (9 * 1152 - 2 * 4304 + 1152) * 2)
    old, _ = _engine("0.13.0")
    assert qwen3_vit_extra_bytes(old, a, layout, s) == 0
    assert not qwen3_5_vit(resolve(ModelSource(preset="qwen3-next-80b-a3b")))  # no vision tower
