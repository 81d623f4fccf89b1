"""vLLM's KV budget and the new runner's sampler state across 0.27.0 (sampler.TOTAL_CONSUMED). Through 0.26.x
determine_available_memory subtracts weights_memory ("Model loading took"), the profile's torch peak above what was
allocated before it and the non-torch growth: none of the three holds a tensor made after init_snapshot, outside
load_model's measurement and before the profile, as the new runner's Sampler state is (GPUModelRunner.__init__ in
0.22.0, load_model after the weights in 0.24.0-0.28.0). From 0.27.0 memory_profiling charges the free memory lost
since the snapshot (total_consumed), which takes it in (utils/mem_utils.py; read in 0.22.0, 0.24.0, 0.26.0-0.28.0)."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.estimator import Layout, engines
from rackfit.estimator.engine_defaults import cuda_total_bytes, settings
from rackfit.estimator.engines import outside_snapshot_bytes, serve, startup_refusal
from rackfit.estimator.sampler import sampler_state_bytes, unbudgeted_state_bytes
from rackfit.models import resolve
from rackfit.spec import parse_spec
from rackfit.units import GiB

H100 = load_catalog().get("gd-8xh100ib-i128").gpu
VOCAB = 151936  # Qwen3


def parts(version, **fields):
    s = parse_spec(dict(model=dict(preset="qwen3-8b"), workload="inference",
                        inference=dict(engineVersion=version, contextLength=8192, **fields)))
    a = resolve(s.model)
    return s.inference, a, settings(s.inference, H100, 1, 1, a)


@pytest.mark.parametrize("version,budgeted", [("0.22.0", False), ("0.24.0", False), ("0.26.0", False),
                                               ("0.27.0", True), ("0.28.0", True)])
def test_the_budget_counts_the_new_runners_sampler_state_from_0_27_0(version, budgeted):
    inf, a, s = parts(version)
    state = sampler_state_bytes(inf, a, s)
    # output_bin_counts (max_num_seqs x vocab int32), prompt_bin_mask and the grammar bitmask (ceil(vocab / 32) each)
    assert state == s.max_num_seqs * (VOCAB + 2 * 4748) * 4 > 0
    assert unbudgeted_state_bytes(inf, a, s) == (0 if budgeted else state)


def test_the_old_runner_has_no_state_to_leave_out():
    inf, a, s = parts("0.21.0")  # Qwen3 takes the new runner from 0.22.0
    assert sampler_state_bytes(inf, a, s) == unbudgeted_state_bytes(inf, a, s) == 0


@pytest.mark.parametrize("version", ["0.26.0", "0.28.0"])
def test_the_pool_is_the_budget_less_the_state_only_where_the_budget_counts_it(version, monkeypatch):
    inf, a, s = parts(version)
    state = sampler_state_bytes(inf, a, s)
    pool = serve(inf, a, Layout(), 16 * GiB, GiB // 2, H100).kv_pool
    monkeypatch.setattr(engines, "unbudgeted_state_bytes", lambda *_: 0)  # as if every release counted it
    counted = serve(inf, a, Layout(), 16 * GiB, GiB // 2, H100).kv_pool
    assert pool - counted == (state if version == "0.26.0" else 0)


def test_before_0_27_0_the_state_outside_the_budget_shrinks_what_the_warm_up_has():
    """After the cache: total - budget - outside + the freed activations; before 0.27.0 the state is held there too."""
    inf, a, s = parts("0.26.0")
    state = sampler_state_bytes(inf, a, s)
    total, context, act = cuda_total_bytes(H100), GiB // 2, GiB
    budget = int(s.gpu_memory_utilization * total)
    free = total - budget - outside_snapshot_bytes(inf, Layout(), H100, context, False) + act
    warm = free - state // 2
    assert startup_refusal(inf, s, Layout(), H100, total, budget, act, 0, warm, context) is None
    refused = startup_refusal(inf, s, Layout(), H100, total, budget, act, 0, warm, context, state_outside=state)
    assert refused is not None and "warming up the sampler" in refused and "sampler state" in refused
