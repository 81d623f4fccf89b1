"""Every estimate carries the measured error of its regime, from make bench's own tables, or "unmeasured"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rackfit.catalog import load_catalog
from rackfit.estimator import estimate
from rackfit.estimator.errorband import MIDDLE_ROWS, regime
from rackfit.estimator.measured_bands import BANDS
from rackfit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_bands_are_what_the_bench_measures_now():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "error_bands.py"), "--check"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def _gpu(architecture: str):
    return next(t.gpu for t in load_catalog().instance_types.values() if t.gpu.architecture == architecture)


def _spec(runtime: str, workload: str, family: str = "any"):
    if workload == "training":
        framework, _, offload = runtime.partition(" ")  # training with CPU offload is its own regime
        training = dict(framework="fsdp", fsdpVersion=1) if framework == "fsdp1" else dict(framework=framework)
        training |= dict(method="full")
        if offload:
            training |= dict(zeroStage=3, offloadOptimizer=True) if framework == "deepspeed" else \
                dict(offloadParameters=True)
        # before Ampere there is no bf16 (estimator/pre_ampere.py): a V100 or T4 row trains in fp16
        precision = "fp16" if family in ("volta", "turing") else "bf16"
        return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="training", precision=precision,
                               training=training))
    if runtime == "tensorrt-llm trt engine":  # TensorRT-LLM's TRT-engine backend is its own regime
        return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                               precision="fp16" if family in ("volta", "turing") else "bf16",
                               inference=dict(engine="tensorrt-llm", tensorrtLlmBackend="trt", contextLength=4096)))
    return parse_spec(dict(model=dict(preset="llama-3.1-8b"), workload="inference",
                           inference=dict(engine=runtime, contextLength=4096)))


def test_each_measured_regime_gives_its_band_with_its_row_count():
    for (runtime, workload, family), (lo, hi, rows, quantity, mid_lo, mid_hi) in BANDS.items():
        spec = _spec(runtime, workload, family)
        gpu = None if family == "any" else _gpu(family)
        assert regime(spec, gpu) == (runtime, workload, family)
        band = estimate(spec, gpu=gpu).error_band
        assert band.startswith(f"{lo:+.1f}%..{hi:+.1f}% of {quantity} on {rows} measured row"), band
        assert lo <= mid_lo <= mid_hi <= hi
        # the middle 80% is worded for large regimes only, where one or two rows set the whole range
        middle = f"the middle 80% within {mid_lo:+.1f}%..{mid_hi:+.1f}%"
        assert (middle in band) == (rows >= MIDDLE_ROWS), band


def test_the_middle_band_is_the_10th_to_90th_percentile_of_the_rows():
    sys.path.insert(0, str(ROOT / "bench"))
    from error_bands import _middle

    errors = [float(e) for e in range(-10, 91)]  # 101 rows, -10..+90
    assert _middle(errors) == (0.0, 80.0)
    assert _middle([5.0]) == (5.0, 5.0)
    # one outlier moves the whole range, not the middle
    assert _middle([*errors, 1202.0])[1] < 90


def test_a_regime_without_rows_is_unmeasured_not_guessed():
    # the TRT-engine backend's public rows with a number are on Ampere, Ada, Hopper and Blackwell (S1000-S1005, S700,
    # S1352): on Turing, with none, its band is not borrowed from its neighbours
    assert ("tensorrt-llm trt engine", "inference", "ampere") in BANDS
    assert ("tensorrt-llm trt engine", "inference", "turing") not in BANDS
    band = estimate(_spec("tensorrt-llm trt engine", "inference", "turing"), gpu=_gpu("turing")).error_band
    assert band.startswith("unmeasured") and "tensorrt-llm" in band
    # nor is the PyTorch backend's band borrowed from the TRT-engine backend's rows, or the other way round
    assert ("tensorrt-llm trt engine", "inference", "ampere") in BANDS
    assert ("tensorrt-llm", "inference", "ampere") not in BANDS
    assert estimate(_spec("tensorrt-llm", "inference"), gpu=_gpu("ampere")).error_band.startswith("unmeasured")
    families = {k[2] for k in BANDS if k[:2] == ("megatron", "training")}
    missing = next(f for f in ("ampere", "ada", "hopper", "blackwell") if f not in families)
    assert estimate(_spec("megatron", "training"), gpu=_gpu(missing)).error_band.startswith("unmeasured")


def test_serving_bands_name_the_unsafe_direction_of_the_cache():
    for (runtime, workload, family), (_, _, _, quantity, _, _) in BANDS.items():
        if workload == "inference" and runtime != "transformers":
            assert quantity == "kv cache"
            gpu = None if family == "any" else _gpu(family)
            assert "more KV cache promised" in estimate(_spec(runtime, workload), gpu=gpu).error_band


def test_the_cli_prints_the_band_and_refuses_a_context_past_the_maximum(capsys):
    from rackfit.cli import main
    assert main(["estimate", "--model", "llama-3.1-8b", "--instance-type", "gd-8xh100ib-i128", "--gpus", "1"]) == 0
    spec = _spec("vllm", "inference")
    expected = estimate(spec, gpu=_gpu("hopper")).error_band
    assert f"measured error of this regime: {expected}" in capsys.readouterr().out
    assert main(["estimate", "--model", "llama-3.1-8b", "--context", "99999999999"]) == 2
    assert "spec.inference.contextLength" in capsys.readouterr().err


def test_fsdp1_is_its_own_regime():
    # FSDP1 (flat parameters, the rate limiter) errs unlike FSDP2: its rows do not widen FSDP2's band
    assert regime(_spec("fsdp1", "training"), None)[0] == "fsdp1"
    assert regime(_spec("fsdp", "training"), None)[0] == "fsdp"
    assert ("fsdp1", "training", "any") in BANDS and ("fsdp", "training", "any") in BANDS
