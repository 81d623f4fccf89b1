"""torchtitan's per-op SAC caching torchao's abs copies of every Float8Linear input and gathered weight, eager, before
torchtitan 0.1 (float8.sac_abs_bytes; T438, issue 22)."""

from __future__ import annotations

import pytest

from rackfit.estimator import Layout
from rackfit.estimator.framework_activations import runtime_activations
from rackfit.models import resolve
from rackfit.spec import parse_spec

SEQ = 8192


def _training(**over):
    training = dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
                    sequenceLength=SEQ, activationCheckpointing="selective", torchtitanVersion="0.0")
    training.update(over)
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16",
                           training=training, parallelism=dict(data=8)))
    return resolve(spec.model), spec.training


def _kept(**over) -> int:
    arch, tr = _training(**over)
    return runtime_activations(arch, tr, Layout(data=8)).kept


def test_eager_tensorwise_keeps_an_abs_copy_of_each_linear_input_and_weight():
    arch, _ = _training()
    h, inter, layers = arch.hidden_size, arch.intermediate_size, arch.num_layers
    # Llama 3 8B: wq, wk, wv read the normed input (3 x 4096), wo the attention output (4096), w1 and w3 the MLP input
    # (2 x 4096), w2 the activation (14336): 38,912 elements a token
    inputs = 3 * h + h + 2 * h + inter
    assert inputs == 38_912
    weights = h * (h + 2 * 1024) + h * h + 3 * h * inter   # q, k+v (8 KV heads of 128), o; w1, w3, w2
    assert weights == 218_103_808
    expected = layers * 2 * (inputs * SEQ + weights)        # 16-bit copies, all 32 blocks until their backward
    extra = _kept(float8="tensorwise") - _kept()
    assert extra == pytest.approx(expected, rel=1e-6)
    assert extra / (1 << 30) == pytest.approx(32.0, abs=0.1)  # T438's eager float8 excess over bf16 (32.6 logged)


def test_only_where_the_save_list_held_abs_and_nothing_fused_it():
    bf16 = _kept()
    assert _kept(float8="tensorwise", compile=True) == _kept(compile=True)   # Inductor fuses abs into the max
    assert _kept(float8="tensorwise", torchtitanVersion="0.1") == _kept(torchtitanVersion="0.1")  # PR 820 removed it
    assert _kept(float8="tensorwise", torchtitanVersion=None) == _kept(torchtitanVersion=None)   # unset: current
    assert _kept(float8="tensorwise", activationCheckpointing="full") == _kept(activationCheckpointing="full")
    assert _kept(float8="rowwise") == _kept(float8="tensorwise") > bf16


def test_float8_all_gather_leaves_out_the_weights_copies():
    arch, _ = _training()
    weights = arch.num_layers * 2 * 218_103_808
    assert _kept(float8="tensorwise") - _kept(float8="tensorwise", float8AllGather=True) == pytest.approx(
        weights, rel=1e-6)
