"""LoRA on a MoE model under Hugging Face transformers' model code before 5.0: peft's suffix match puts adapters on
every expert's own gate_proj, up_proj and down_proj (modeling_qwen3_moe.py of 4.51.3 builds the experts as an
nn.ModuleList of Qwen3MoeMLP), not on one dense MLP; from 5.0 (fused expert parameters) and with the release unset,
the count is the dense MLP's as before."""

from __future__ import annotations

from rackfit.estimator.training import lora_params, per_expert_adapters
from rackfit.models import resolve
from rackfit.spec import parse_spec


def _spec(preset: str = "qwen3-30b-a3b", **training):
    t = dict(framework="transformers", method="lora", loraRank=8, microBatchSize=1, sequenceLength=128,
             activationCheckpointing="full", **training)
    return parse_spec(dict(model=dict(preset=preset), workload="training", precision="bf16", training=t))


def test_qwen3_30b_a3b_expert_adapters_before_5_0():
    """48 layers x (attention's q, k, v, o + 128 experts x gate, up, down of 2,048 x 768), r8: 422M adapters."""
    s = _spec(transformersVersion="4.51.3")
    a = resolve(s.model)
    assert per_expert_adapters(a, s.training)
    attention = 8 * ((2048 + 4096) + 2 * (2048 + 512) + (4096 + 2048))
    experts = 128 * 8 * (2 * (2048 + 768) + (768 + 2048))
    assert lora_params(a, s.training) == 48 * (attention + experts)


def test_unset_release_5_0_attention_only_and_dense_models_unchanged():
    a = resolve(_spec().model)
    dense = lora_params(a, _spec().training)
    assert not per_expert_adapters(a, _spec().training)
    assert lora_params(a, _spec(transformersVersion="5.0.0").training) == dense
    attn = _spec(transformersVersion="4.51.3", loraTargets=["q", "k", "v", "o"]).training
    assert not per_expert_adapters(a, attn)
    llama = _spec("llama-3.1-8b", transformersVersion="4.51.3")
    assert not per_expert_adapters(resolve(llama.model), llama.training)
