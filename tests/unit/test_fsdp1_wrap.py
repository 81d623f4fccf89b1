"""FSDP1's wrap of a model handed over on CPU or meta (estimator/frameworks.py, fsdp1_wrap_peak): at the root, wrapped
last, every shard is on the GPU with the root's unsharded parameters twice (the moved originals and the flat
parameter), and the decoder layers' freed copies stay cached; the estimate is the larger of that and the step."""

from __future__ import annotations

from rackfit.estimator import estimate
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.fsdp import fsdp1_wrap_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.weights import weight_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

GiB = 1 << 30


def _spec(vocab: int, seq: int, fsdp: int = 1, method: str = "lora", precision: str = "bf16"):
    # Llama-2 7B's shapes (bench T22) with the vocabulary as given, untied: the root unit holds two vocab matrices
    arch = dict(numLayers=32, hiddenSize=4096, intermediateSize=11008, numAttentionHeads=32, numKeyValueHeads=32,
                headDim=128, vocabSize=vocab, tieWordEmbeddings=False)
    return parse_spec(dict(model=dict(preset="mistral-7b-v0.3", architecture=arch), workload="training",
                           precision=precision,
                           training=dict(framework="fsdp", fsdpVersion=fsdp, method=method, loraRank=64,
                                         masterWeights="none", optimizer="adamw", microBatchSize=1,
                                         sequenceLength=seq, activationCheckpointing="full"),
                           parallelism=dict(data=2)))


def _peak(s):
    arch = resolve(s.model)
    p = count_params(arch)
    frozen = weight_bytes(p, s.precision, s.parallelism, arch.num_layers, arch)
    return runtime_peak(arch, p, s.training, s.precision, s.parallelism, frozen)


def test_wrap_peak_holds_the_larger_unit_twice_and_caches_the_other():
    assert fsdp1_wrap_peak(10 * GiB, 1 * GiB, 3 * GiB) == (16 * GiB, 2 * GiB)
    assert fsdp1_wrap_peak(10 * GiB, 3 * GiB, 1 * GiB) == (16 * GiB, 2 * GiB)


def test_llama2_lora_wrap_is_under_its_step():
    # T22: Llama-2 7B LoRA on two GPUs. The root (embeddings and output, 16-bit: 500 MiB) twice over the shards and
    # a 386 MiB layer's two cached copies: about 8.1 GiB reserved, under the step's count at 512 tokens
    s = _spec(32000, 512)
    r = _peak(s)
    root = 2 * 32000 * 4096 * 2
    resident = r.load - 2 * root  # the shards (r.states less the adapters' gradients and AdamW states)
    assert 0 < r.states - resident < 0.5 * GiB
    assert 7.5 * GiB < r.load + r.load_cached < 8.5 * GiB
    assert estimate(s).peak_phase != "load"


def test_large_untied_vocabulary_at_short_context_peaks_at_load():
    # a 256k untied vocabulary: the root unit is 3.9 GiB, held twice during the wrap, once in the step
    short, long = estimate(_spec(256000, 128)), estimate(_spec(256000, 4096))
    assert short.peak_phase == "load"
    assert short.breakdown.activations_bytes == 0 and short.breakdown.optimizer_states_bytes == 0
    r = _peak(_spec(256000, 128))
    assert short.breakdown.weights_bytes == r.load
    assert r.load - r.states > 2 * 2 * 256000 * 4096 * 2 - GiB  # the root twice, less the adapters' states
    assert long.peak_phase != "load" and long.total_bytes > short.total_bytes


def test_fsdp2_and_qlora_step_keep_their_phase():
    assert estimate(_spec(256000, 128, fsdp=2)).peak_phase != "load"   # fully_shard: no flat copy (not modelled)
    assert _peak(_spec(256000, 128, fsdp=2)).load == 0
