"""Where the optimizer step's temporaries go without expandable segments (estimator/__init__.py `_step_segments`,
fsdp.step_segment_inputs; docs/accuracy.md, "Where FSDP2's step temporaries go without expandable segments").
The caching allocator serves a request from the smallest cached block of its stream that is large enough and makes a
new segment only when none is; FSDP2's foreach AdamW makes one temporary per parameter shard. Expected bytes by hand
from Llama 3.1 8B's shapes (vocabulary 128,256 x hidden 4,096) on FSDP2 over 8, micro-batch 1 x 8192 (T130)."""

from __future__ import annotations

from rackfit.estimator import SLACK_TRAINING, _runtime, _step_segments, estimate
from rackfit.estimator.frameworks import RuntimePeak, runtime_peak
from rackfit.estimator.params import count_params
from rackfit.estimator.weights import weight_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec

GiB = 1 << 30


def _spec(data: int = 8, **training):
    tr = dict(framework="fsdp", method="full", masterWeights="fp32", optimizer="adamw", microBatchSize=1,
              sequenceLength=8192, activationCheckpointing="none", expandableSegments=False,
              adamwImplementation="foreach", torchtitanVersion="0.0")
    tr.update(training)
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16", training=tr,
                           parallelism=dict(data=data)))


def _peak(s):
    arch = resolve(s.model)
    p = count_params(arch)
    layout = estimate(s).layout
    frozen = weight_bytes(p, s.precision, layout, arch.num_layers, arch)
    return arch, p, layout, frozen, runtime_peak(arch, p, s.training, s.precision, layout, frozen)


def test_fsdp2_step_tensors_are_one_parameter_shard_each():
    _, p, _, _, r = _peak(_spec())
    # the embedding's fp32 shard: 128,256 x 4,096 / 8 elements x 4 bytes = 262,668,288 (250.5 MiB)
    assert r.step_largest == 128_256 * 4_096 // 8 * 4 == 262_668_288
    # the 16-bit logits of 1 x 8192 tokens: 8192 x 128,256 x 2 = 2,101,346,304 bytes (1.96 GiB)
    assert r.freed_block == 8192 * 128_256 * 2 == 2_101_346_304
    # AdamW's exp_avg and exp_avg_sq, fp32, sharded over 8: 8 bytes a parameter / 8 (7.48 GiB)
    assert r.step_first_states == p.total * 8 // 8
    # the foreach sqrt: one fp32 state's size (3.74 GiB)
    assert r.step_transient == p.total * 4 // 8
    assert 7.4 * GiB < r.step_first_states < 7.55 * GiB


def test_fsdp2_step_takes_no_new_segment_where_it_fits_the_freed_blocks():
    s = _spec()
    arch, p, layout, frozen, r = _peak(s)
    # 7.48 + 3.74 GiB of states and temporaries against about 61 GiB the backward freed
    assert r.step_first_states + r.step_transient < r.backward_transient - r.reused
    assert _step_segments(r) == 0
    parts, _, _ = _runtime(s, arch, p, layout, frozen)
    # the slack is the backward's share alone: 0.07 of what it freed, the step adds nothing
    assert parts["slack"] == int(r.backward_transient + SLACK_TRAINING * (r.backward_transient - r.reused)) \
        - r.transient


def test_step_one_reading_without_states_fits_too():
    # T130's step-1 variant: sgd without momentum keeps no state; its weight-decay copy is one per shard
    _, p, _, _, r = _peak(_spec(optimizer="sgd", sgdMomentum=False, adamwImplementation=None))
    assert r.step_first_states == 0
    assert r.step_transient == p.total * 4 // 8
    assert _step_segments(r) == 0


def test_fsdp2_on_two_gpus_with_full_checkpointing_still_takes_new_segments():
    # T32 full AC's setup: the first step's states (8 bytes a parameter / 2, 29.9 GiB) and the sqrt (15.0 GiB) exceed
    # what the checkpointed backward freed: new segments, as before
    _, p, _, _, r = _peak(_spec(data=2, microBatchSize=1, activationCheckpointing="full"))
    assert r.step_first_states + r.step_transient > r.backward_transient - r.reused
    assert _step_segments(r) == r.step_transient == p.total * 4 // 2


def test_fsdp1_and_one_gpu_keep_the_old_rule():
    # FSDP1 steps flat parameters: not measured here, counted in new segments as before; one GPU applies no FSDP
    for s in (_spec(fsdpVersion=1, torchtitanVersion=None), _spec(data=1, torchtitanVersion=None)):
        r = _peak(s)[-1]
        assert (r.step_largest, r.step_first_states, r.freed_block) == (0, 0, 0)
        assert _step_segments(r) == r.step_transient


def _r(**kw) -> RuntimePeak:
    base = dict(weights=0, gradients=0, optimizer=0, activations=0, phase="loss backward", states=0,
                transient=10 * GiB, backward_transient=10 * GiB, step_transient=2 * GiB, expandable_segments=False,
                reused=GiB, step_largest=100 << 20, step_first_states=4 * GiB, freed_block=GiB)
    base.update(kw)
    return RuntimePeak(**base)


def test_the_rule_compares_the_largest_tensor_and_the_total():
    assert _step_segments(_r()) == 0                                       # 4 + 2 <= 10 - 1, 100 MiB <= 1 GiB
    assert _step_segments(_r(freed_block=99 << 20)) == 2 * GiB             # the largest shard fits no freed block
    assert _step_segments(_r(step_first_states=7 * GiB + 1)) == 2 * GiB    # 7 GiB + 1 + 2 > 9 GiB freed
    assert _step_segments(_r(step_first_states=7 * GiB)) == 0              # exactly what was freed
