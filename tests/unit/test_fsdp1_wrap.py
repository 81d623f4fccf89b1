"""FSDP1's wrap of a model handed over on CPU or meta (estimator/fsdp.py, fsdp1_wrap_peak): at the root, wrapped
last, every shard is on the GPU with the root's unsharded parameters twice (the moved originals and the flat
parameter), and the decoder layers' freed copies stay cached; the estimate is the larger of that and the step."""

from __future__ import annotations

from training_specs import llama2_7b_fsdp

from rackfit.estimator import estimate, training_peak
from rackfit.estimator.fsdp import fsdp1_wrap_peak

GiB = 1 << 30


def test_wrap_peak_holds_the_larger_unit_twice_and_caches_the_other():
    assert fsdp1_wrap_peak(10 * GiB, 1 * GiB, 3 * GiB) == (16 * GiB, 2 * GiB)
    assert fsdp1_wrap_peak(10 * GiB, 3 * GiB, 1 * GiB) == (16 * GiB, 2 * GiB)


def test_llama2_lora_wrap_is_under_its_step():
    # T22: Llama-2 7B LoRA on two GPUs. The root (embeddings and output, 16-bit: 500 MiB) twice over the shards and
    # a 386 MiB layer's two cached copies: about 8.1 GiB reserved, under the step's count at 512 tokens
    s = llama2_7b_fsdp(512)
    r = training_peak(s)
    root = 2 * 32000 * 4096 * 2
    resident = r.load - 2 * root  # the shards (r.states less the adapters' gradients and AdamW states)
    assert 0 < r.states - resident < 0.5 * GiB
    assert 7.5 * GiB < r.load + r.load_cached < 8.5 * GiB
    assert estimate(s).peak_phase != "load"


def test_large_untied_vocabulary_at_short_context_peaks_at_load():
    # a 256k untied vocabulary: the root unit is 3.9 GiB, held twice during the wrap, once in the step
    short, long = estimate(llama2_7b_fsdp(128, vocab=256000)), estimate(llama2_7b_fsdp(4096, vocab=256000))
    assert short.peak_phase == "load"
    assert short.breakdown.activations_bytes == 0 and short.breakdown.optimizer_states_bytes == 0
    r = training_peak(llama2_7b_fsdp(128, vocab=256000))
    assert short.breakdown.weights_bytes == r.load
    assert r.load - r.states > 2 * 2 * 256000 * 4096 * 2 - GiB  # the root twice, less the adapters' states
    assert long.peak_phase != "load" and long.total_bytes > short.total_bytes


def test_fsdp2_and_qlora_step_keep_their_phase():
    # fully_shard: no flat copy (not modelled)
    assert estimate(llama2_7b_fsdp(128, vocab=256000, fsdp=2)).peak_phase != "load"
    assert training_peak(llama2_7b_fsdp(128, vocab=256000, fsdp=2)).load == 0


def test_the_runtime_note_names_the_precision_the_spec_states():
    # T1340: a pure fp16 full fine-tune (masterWeights none) runs without a MixedPrecision policy; with fp32 masters
    # accelerate casts the fp32 shards to the 16-bit param dtype
    pure = estimate(llama2_7b_fsdp(512, method="full", precision="fp16"))
    assert any("no MixedPrecision (fp16 parameters" in n for n in pure.notes)
    mixed = llama2_7b_fsdp(512, method="full")
    mixed = mixed.model_copy(update=dict(training=mixed.training.model_copy(update=dict(master_weights="fp32"))))
    assert any("bf16 MixedPrecision over fp32 shards" in n for n in estimate(mixed).notes)
