"""FSDP1's unshard streams' pools at its loss moment (estimator/fsdp.py, fsdp1_unshard_pool_cached): FSDP1 gathers
on its own `_unshard_stream` (the low-precision shard on `_pre_unshard_stream`), the caching allocator gives a freed
block back only to its own stream, so the layer units freed after the forward stay reserved beside the default
stream's loss buffers."""

from __future__ import annotations

from rackfit.estimator import Layout, estimate, frameworks
from rackfit.estimator.frameworks import runtime_peak
from rackfit.estimator.fsdp import fsdp1_unshard_pool_cached
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import ModelSource, Training, parse_spec

LLAMA = resolve(ModelSource(preset="llama-3.1-8b"))
P = count_params(LLAMA)
LAYER = (P.total - 2 * P.embedding) // LLAMA.num_layers


def tr(**training) -> Training:
    return Training(framework="fsdp", fsdpVersion=1, **training)


def test_the_pools_keep_their_forward_peak_less_what_the_loss_gathers():
    assert fsdp1_unshard_pool_cached(10, 3) == 7
    assert fsdp1_unshard_pool_cached(3, 3) == 0


def test_loss_backward_moment_keeps_one_freed_layer_unit_reserved():
    """At the loss's backward the root and the prefetched last unit (with its 16-bit shard) are gathered; the
    forward's pools held the root, two layer units and a shard: one layer unit's 16-bit block is left cached."""
    r = runtime_peak(LLAMA, P, tr(), "bf16", Layout(data=8), 0)
    assert r.phase == "loss backward"
    assert r.unshard_cached == LAYER * 2


def test_layer_moment_has_every_unit_it_counts_gathered():
    """Where a layer's moment outweighs the loss's (a short sequence), the pools' peak is what that moment holds:
    nothing beyond it is cached."""
    r = runtime_peak(LLAMA, P, tr(sequenceLength=512), "bf16", Layout(data=8), 0)
    assert r.phase == "layer backward"
    assert r.unshard_cached == 0


def test_fsdp2_and_lora_count_none():
    assert runtime_peak(LLAMA, P, Training(framework="fsdp"), "bf16", Layout(data=8), 0).unshard_cached == 0
    assert runtime_peak(LLAMA, P, tr(method="lora"), "bf16", Layout(data=8), 0).unshard_cached == 0


def test_the_reservation_adds_the_pools_and_not_the_allocated_part(monkeypatch):
    spec = parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision="bf16",
                           training=dict(framework="fsdp", fsdpVersion=1), parallelism=dict(data=8)))
    with_pools = estimate(spec)
    monkeypatch.setattr(frameworks, "fsdp1_unshard_pool_cached", lambda gathered, loss_gathered: 0)
    without = estimate(spec)
    assert with_pools.total_bytes - without.total_bytes == LAYER * 2
    assert with_pools.breakdown.weights_bytes == without.breakdown.weights_bytes
    assert with_pools.breakdown.activations_bytes == without.breakdown.activations_bytes
