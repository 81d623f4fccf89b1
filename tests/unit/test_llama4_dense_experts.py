"""Hugging Face transformers' Llama 4 MoE runs every expert on every token in training (activations.routed_copies:
Llama4TextMoe.forward, models/llama4/modeling_llama4.py from 4.51.0, `hidden_states.repeat(router_scores.shape[1], 1)`
then self.experts over all the copies); torchtitan's and torchtune's Llama 4 route each token to its top-k only.
Expected bytes computed by hand on Llama 4 Scout's preset (48 layers x 5120, 16 experts of 8192, top-1, one shared)."""

from __future__ import annotations

import pytest

from rackfit.estimator.activations import _layer_bytes_per_token, compile_savings, lora_adapter_bytes, routed_copies
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training

SCOUT = resolve(ModelSource(preset="llama-4-scout"))
QWEN3_MOE = resolve(ModelSource(preset="qwen3-30b-a3b"))


def _tr(framework: str, **extra) -> Training:
    return Training(framework=framework, method="qlora", microBatchSize=1, sequenceLength=4096,
                    activationCheckpointing="full", **extra)


@pytest.mark.parametrize("tr", [_tr("transformers"), _tr("deepspeed", zeroStage=3),
                                _tr("fsdp", fsdpVersion=2, modelCode="transformers"), _tr("fsdp", fsdpVersion=1)])
def test_transformers_llama4_keeps_every_experts_copy_of_every_token(tr):
    assert routed_copies(SCOUT, tr) == 16
    top_k = tr.model_copy(update={"framework": "fsdp", "fsdp_version": 2, "model_code": "torchtitan"})
    # 15 copies more than top-1, each an expert's gate, up, activation and product (4 x 8192) and its input (5120),
    # 2 bytes an element (the adapters' own share set apart: 16-bit under DeepSpeed, peft's fp32 copies elsewhere)
    more = (_layer_bytes_per_token(SCOUT, tr, 1, mixed=False)[0] - lora_adapter_bytes(SCOUT, tr)) - \
        (_layer_bytes_per_token(SCOUT, top_k, 1, False)[0] - lora_adapter_bytes(SCOUT, top_k))
    assert more == 15 * (4 * 8192 + 5120) * 2


def test_torchtitan_and_torchtune_llama4_route_top_k():
    tr = Training(framework="fsdp", method="lora", microBatchSize=1, sequenceLength=4096)   # torchtune's FSDP2
    assert routed_copies(SCOUT, tr) == 1


def test_other_moe_models_under_transformers_route_top_k():
    # Qwen3-MoE's transformers block loops over the experts that were hit, each on its routed tokens only
    assert routed_copies(QWEN3_MOE, _tr("transformers")) == QWEN3_MOE.num_experts_per_token == 8


def test_compile_recomputes_every_copys_activation():
    # Inductor recomputes SwiGLU's act(gate) for each of the 16 copies and the shared expert: 17 x 8192 x 2 bytes
    tr = _tr("transformers", compile=True)
    top_k = tr.model_copy(update={"framework": "fsdp", "fsdp_version": 2, "model_code": "torchtitan"})
    assert compile_savings(SCOUT, tr, 1) - compile_savings(SCOUT, top_k, 1) == 15 * 8192 * 2
