"""The CLI: main(argv) -> exit code; JSON shape the operator shares; errors on stderr with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rackfit.cli import main

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_plans(example, capsys):
    assert main(["plan", "-f", str(example), "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["estimate"]["totalBytes"] <= out["placement"]["gpuMemoryBytes"]
    assert set(out["placement"]) >= {"instanceType", "gpusPerNode", "nodes", "totalGPUs", "tensor", "pipeline",
                                     "data", "expert"}


def test_estimate_json_shape_and_sum(capsys):
    assert main(["estimate", "--model", "llama-3.1-70b", "--precision", "fp8", "--context", "8192",
                 "--concurrency", "32", "--gpus", "4", "-o", "json"]) == 0
    est = json.loads(capsys.readouterr().out)["estimate"]
    parts = est["breakdown"]
    assert set(parts) == {"weightsBytes", "kvCacheBytes", "activationsBytes", "gradientsBytes",
                          "optimizerStatesBytes", "overheadBytes"}
    assert sum(parts.values()) == est["totalBytes"]
    assert est["layout"]["tensor"] == 4


def test_gpus_1_is_one_gpu_no_parallelism(capsys):
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpus", "1", "-o", "yaml"]) == 0
    layout = yaml.safe_load(capsys.readouterr().out)["estimate"]["layout"]
    assert layout == {"tensor": 1, "pipeline": 1, "data": 1, "expert": 1}


def test_human_output_has_a_bar_against_capacity(capsys):
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpus", "1", "--instance-type", "gd-8xl40s-i128"]) == 0
    out = capsys.readouterr().out
    assert "usable" in out and "[W" in out and "KV cache" in out


def test_bare_spec_and_hf_config(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "num_hidden_layers": 16, "hidden_size": 2048, "intermediate_size": 8192,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
        "tie_word_embeddings": True}))
    (tmp_path / "spec.yaml").write_text("model: {huggingFaceConfig: config.json}\nworkload: inference\n")
    assert main(["estimate", "-f", str(tmp_path / "spec.yaml"), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["estimate"]["parameters"] == 1_235_814_400


@pytest.mark.parametrize("argv,field", [
    (["estimate", "--model", "llama-9"], "spec.model.preset"),
    (["estimate", "--model", "llama-3.1-8b", "--precision", "fp9"], "spec.precision"),
    (["estimate", "--model", "llama-3.1-8b", "--context", "0"], "spec.inference.contextLength"),
    (["plan", "--model", "llama-3.1-8b", "--instance-type", "h100"], "spec.placement.instanceTypes"),
    (["estimate", "-f", "/nonexistent.yaml"], "cannot read"),
])
def test_errors_name_the_field_exit_2(argv, field, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_plan_exits_1_when_nothing_fits(tmp_path, capsys):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({
        "kind": "LLMWorkload", "apiVersion": "rackfit.io/v1alpha1", "metadata": {"name": "x"},
        "spec": {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                 "placement": {"instanceTypes": ["gd-8xl40s-i128"], "maxNodes": 1}}}))
    assert main(["plan", "-f", str(tmp_path / "w.yaml")]) == 1
    assert "does not fit" in capsys.readouterr().out.lower()


def test_catalog_check_guide_flags_gb300_and_gh200(capsys):
    assert main(["catalog", "--check-guide", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    flagged = {r["instance_type"] for r in rows if r["disagreements"]}
    assert flagged == {"gb300-4x", "gd-1xgh200"}
