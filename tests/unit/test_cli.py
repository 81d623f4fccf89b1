"""The CLI: main(argv) -> exit code; JSON shape the operator shares; errors on stderr with exit 2."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

import rackfit
from rackfit import cli
from rackfit.cli import main
from rackfit.units import count

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_says_what_rackfit_plan_gives(example, capsys):
    """Each example's `# rackfit plan:` comment is what `rackfit plan` prints for it today."""
    said = [line.split(": ", 1)[1] for line in example.read_text().splitlines()
            if line.startswith("# rackfit plan: ")]
    assert main(["plan", "-f", str(example)]) == 0
    head, layout = capsys.readouterr().out.splitlines()[:2]
    assert said == [f"{head}, {layout.split('layout: ')[1].split('   peak')[0]}"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_plans(example, capsys):
    assert main(["plan", "-f", str(example), "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    est = out["estimate"]
    # a serving engine's budget (gpuMemoryBytes: gpuMemoryUtilization x total) excludes the CUDA context, which is
    # in vLLM's baseline snapshot before the profile (gpu_worker.py); training and transformers count it
    context = est["breakdown"]["overheadBytes"] if est.get("engineBudgetBytes") else 0
    assert est["totalBytes"] - context <= out["placement"]["gpuMemoryBytes"]
    assert set(out["placement"]) >= {"instanceType", "gpusPerNode", "nodes", "totalGPUs", "tensor", "pipeline",
                                     "data", "expert"}


def test_estimate_json_shape_and_sum(capsys):
    assert main(["estimate", "--model", "llama-3.1-70b", "--precision", "fp8", "--context", "8192",
                 "--concurrency", "32", "--gpus", "4", "-o", "json"]) == 0
    est = json.loads(capsys.readouterr().out)["estimate"]
    parts = est["breakdown"]
    assert set(parts) == {"weightsBytes", "kvCacheBytes", "activationsBytes", "gradientsBytes",
                          "optimizerStatesBytes", "cudaGraphBytes", "nonTorchBytes", "overheadBytes"}
    assert sum(parts.values()) == est["totalBytes"]
    assert est["layout"]["tensor"] == 4


def test_engine_version_plans_an_older_vllm(capsys):
    """--engine-version 0.7.3: the V0 profile run of max(context, 2048) tokens leaves a smaller cache."""
    base = ["estimate", "--model", "llama-3.1-8b", "--context", "32768", "--instance-type", "gd-8xh100ib-i128",
            "--gpus", "1", "-o", "json"]
    assert main(base) == 0
    current = json.loads(capsys.readouterr().out)["estimate"]
    assert main([*base, "--engine-version", "0.7.3"]) == 0
    v0 = json.loads(capsys.readouterr().out)["estimate"]
    assert v0["engine"]["maxNumBatchedTokens"] == 32768 and v0["engine"]["maxNumSeqs"] == 256
    assert v0["kvCacheTokens"] < current["kvCacheTokens"]


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
    flagged = {r["instanceType"] for r in rows if r["disagreements"]}
    assert flagged == {"gb300-4x", "gd-1xgh200"}


# --- flags: applied, overriding with a note, or refused; never dropped ----------------------------

EXAMPLE = {p.stem: p for p in EXAMPLES}
SERVING = str(EXAMPLE["vllm-llama-3.1-70b"])  # fp8, contextLength 8192, concurrency 32, kv fp8
LORA = str(EXAMPLE["lora-qwen-7b-job"])


@pytest.mark.parametrize("argv,words", [
    (["estimate", "--model", "llama-3.1-8b", "--method", "lora"], ["--method", "training", "inference"]),
    (["estimate", "--model", "llama-3.1-8b", "--batch", "4"], ["--batch", "training"]),
    (["plan", "--model", "llama-3.1-8b", "--checkpointing", "full"], ["--checkpointing", "training"]),
    (["estimate", "--model", "llama-3.1-8b", "--workload", "training", "--concurrency", "4"],
     ["--concurrency", "inference"]),
    (["estimate", "-f", LORA, "--kv-precision", "fp8"], ["--kv-precision", "inference"]),
    (["estimate", "-f", SERVING, "--method", "lora"], ["--method", "training"]),
    (["plan", "-f", SERVING, "--model", "llama-3.1-8b"], ["--model", "-f"]),
    (["estimate", "-f", SERVING, "--workload", "training"], ["--workload", "inference"]),
    (["estimate", "--model", "llama-3.1-8b", "--catalog", "prices.yaml"], ["--catalog", "--instance-type"]),
])
def test_flags_that_do_not_apply_are_errors(argv, words, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("rackfit: error: ") and err.count("\n") == 1
    assert all(w in err for w in words), err


def test_workload_flag_that_agrees_with_the_file_is_accepted(capsys):
    assert main(["estimate", "-f", SERVING, "--workload", "inference", "-o", "json"]) == 0
    assert capsys.readouterr().err == ""


def test_flags_override_the_file_and_say_so(capsys):
    assert main(["estimate", "-f", SERVING, "--precision", "bf16", "--context", "1024", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert "--precision bf16 overrides spec.precision: fp8" in err
    assert "--context 1024 overrides spec.inference.contextLength: 8192" in err
    assert main(["estimate", "--model", "llama-3.1-70b", "--precision", "bf16", "--context", "1024",
                 "--concurrency", "32", "--kv-precision", "fp8", "-o", "json"]) == 0
    assert json.loads(out) == json.loads(capsys.readouterr().out)


def test_override_replaces_a_snake_case_key_and_an_equal_value_is_silent(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text("model: {preset: llama-3.1-8b}\nworkload: inference\n"
                                        "inference: {context_length: 8192}\n")
    assert main(["estimate", "-f", str(tmp_path / "spec.yaml"), "--context", "2048", "--concurrency", "1"]) == 0
    err = capsys.readouterr().err
    assert "--context 2048 overrides spec.inference.contextLength: 8192" in err and "concurrency" not in err


def test_training_flags_override_a_training_file(capsys):
    assert main(["estimate", "-f", LORA, "--batch", "1", "--checkpointing", "none", "-o", "json"]) == 0
    err = capsys.readouterr().err
    assert "--batch 1 overrides spec.training.microBatchSize: 4" in err
    assert "--checkpointing none overrides spec.training.activationCheckpointing: full" in err


def test_instance_type_overrides_the_files_instance_types(capsys):
    assert main(["plan", "-f", SERVING, "--instance-type", "b200-8x", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["placement"]["instanceType"] == "b200-8x"
    assert "--instance-type b200-8x overrides spec.placement.instanceTypes" in err


def test_gpus_overrides_the_files_parallelism(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text("model: {preset: llama-3.1-8b}\nworkload: inference\n"
                                        "parallelism: {tensor: 2}\n")
    assert main(["estimate", "-f", str(tmp_path / "spec.yaml"), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["estimate"]["layout"]["tensor"] == 2
    assert main(["estimate", "-f", str(tmp_path / "spec.yaml"), "--gpus", "4", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["estimate"]["layout"]["tensor"] == 4 and "--gpus 4 overrides spec.parallelism" in err


def test_gpus_is_data_parallel_for_training(capsys):
    # FSDP, ZeRO, DDP and Megatron all default to data parallel over the job's GPUs
    assert main(["estimate", "--model", "llama-3.1-8b", "--workload", "training", "--framework", "fsdp",
                 "--gpus", "8", "-o", "json"]) == 0
    layout = json.loads(capsys.readouterr().out)["estimate"]["layout"]
    assert (layout["tensor"], layout["pipeline"], layout["data"]) == (1, 1, 8)


def test_estimate_with_instance_type_and_no_gpus_estimates_the_smallest_layout(capsys):
    assert main(["estimate", "--model", "llama-3.1-405b", "--instance-type", "gd-8xh100ib-i128", "-o", "json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert set(data) == {"estimate"}  # an estimate, not a plan
    layout = data["estimate"]["layout"]
    assert layout["tensor"] * layout["pipeline"] * layout["data"] == 16
    assert "no --gpus" in err and "smallest layout" in err and "2 nodes x 8 GPUs = 16 GPUs" in err
    assert main(["estimate", "--model", "llama-3.1-405b", "--instance-type", "gd-8xh100ib-i128"]) == 0
    assert capsys.readouterr().out.startswith("llama-3.1-405b: inference on 16 GPUs of gd-8xh100ib-i128\n")


def test_estimate_with_instance_type_that_cannot_fit_exits_1(tmp_path, capsys):
    (tmp_path / "w.yaml").write_text("model: {preset: llama-3.1-405b}\nworkload: inference\n"
                                     "placement: {maxNodes: 1}\n")
    assert main(["estimate", "-f", str(tmp_path / "w.yaml"), "--instance-type", "gd-8xl40s-i128"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "does not fit gd-8xl40s-i128" in err


def test_operator_peering_and_standalone_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as e:
        main(["operator", "--standalone", "--peering", "x"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err


# --- units and wording in human output -----------------------------------------------------------

def test_count_pluralises():
    assert [count(1, "node"), count(2, "node"), count(0, "GPU"), count(8, "GPU")] == \
        ["1 node", "2 nodes", "0 GPUs", "8 GPUs"]
    assert count(3, "index", "indices") == "3 indices" and count(1, "index", "indices") == "1 index"


def test_plan_text_counts_and_units(capsys):
    assert main(["plan", "-f", str(EXAMPLE["llama-405b-bf16-serving"])]) == 0
    out = capsys.readouterr().out
    assert "(s)" not in out and " GB" not in out and "active" not in out  # dense: no active parameters
    assert out.splitlines()[0].startswith("gb200-4x: 2 nodes x 4 GPUs = 8 GPUs")
    assert "GiB/GPU of" in out and " on 2 nodes " in out


def test_single_node_and_moe_wording(capsys):
    assert main(["plan", "-f", str(EXAMPLE["sglang-deepseek-v3"])]) == 0
    out = capsys.readouterr().out
    assert "(s)" not in out and "1 node x 8 GPUs" in out
    assert "B active)" in out.splitlines()[1]  # MoE: active parameters shown
    assert main(["estimate", "--model", "llama-3.1-8b", "--gpus", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llama-3.1-8b: inference on 1 GPU\n") and "active" not in out


def test_catalog_labels_the_vendor_gb(capsys):
    assert main(["catalog"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert "memory/GPU" in header and "vendor size" in header
    h200 = next(r for r in rows if r.startswith("gd-8xh200ib-i128"))
    assert "140.4 GiB" in h200 and "141 GB" in h200
    assert main(["catalog", "--check-guide"]) == 0
    out = capsys.readouterr().out
    assert "vendor memory" in out.splitlines()[0] and "(1 GPU)" in out and "(s)" not in out


# --- JSON ----------------------------------------------------------------------------------------

def _keys(node, skip=("nodeSelector",)):
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            if k not in skip:
                yield from _keys(v)
    elif isinstance(node, list):
        for v in node:
            yield from _keys(v)


@pytest.mark.parametrize("argv", [
    ["estimate", "--model", "llama-3.1-8b"],
    ["plan", "-f", str(EXAMPLE["sglang-deepseek-v3"])],
    ["catalog"],
    ["catalog", "--check-guide"],
])
def test_json_keys_are_camel_case(argv, capsys):
    main([*argv, "-o", "json"])
    keys = set(_keys(json.loads(capsys.readouterr().out)))
    assert keys and not [k for k in keys if "_" in k]


def test_check_guide_json_counts_are_integers(capsys):
    assert main(["catalog", "--check-guide", "-o", "json"]) == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert set(row) == {"instanceType", "gpus", "memoryBytes", "guideMemoryBytes", "inferenceParams",
                        "trainingParams", "guideInferenceParams", "guideTrainingParams", "disagreements"}
    assert all(type(v) is int for k, v in row.items() if k not in ("instanceType", "disagreements"))
    assert row["memoryBytes"] == 72 * 288 * 10**9 and row["guideTrainingParams"] == 1_300_000_000_000


# --- --version, help, pipes, the operator extra -------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"rackfit {importlib.metadata.version('rackfit')}\n"


def test_version_without_installed_metadata(monkeypatch, capsys):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"rackfit {rackfit.__version__}\n"


@pytest.mark.parametrize("argv", [[], ["estimate"], ["plan"], ["catalog"], ["operator"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: rackfit") and "(s)" not in out


def test_help_groups_the_workload_flags(capsys):
    with pytest.raises(SystemExit):
        main(["estimate", "--help"])
    out = capsys.readouterr().out
    assert "inference only:" in out and "training only:" in out and "{full,lora,qlora}" in out


def test_closed_pipe_exits_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as with `| head -1` on long output
    env = {**os.environ, "PYTHONPATH": str(Path(rackfit.__file__).parents[1])}
    try:
        proc = subprocess.run([sys.executable, "-m", "rackfit", "catalog", "-o", "json"], stdout=write,
                              stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(write)
    assert proc.stderr == b"" and proc.returncode == 141


def test_broken_pipe_in_process(monkeypatch, capsys):
    class Closed:
        def write(self, _):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["catalog"]) == 141
    assert capsys.readouterr().err == ""


def test_operator_without_the_extra_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "kopf", None)  # `import kopf` raises ImportError
    assert main(["operator"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "pip install 'rackfit[operator]'" in err and "kopf" in err


def test_operator_module_missing_a_dependency_of_the_extra(monkeypatch, tmp_path, capsys):
    (tmp_path / "fake_rackfit_operator.py").write_text("import prometheus_client.core\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "OPERATOR_MODULE", "fake_rackfit_operator")
    monkeypatch.setitem(sys.modules, "kopf", types.ModuleType("kopf"))  # present, whether installed or not
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "fake_rackfit_operator", raising=False)
    assert main(["operator"]) == 2
    assert "prometheus_client" in capsys.readouterr().err


def test_operator_import_errors_of_our_own_are_not_hidden(monkeypatch, tmp_path):
    (tmp_path / "fake_rackfit_operator2.py").write_text("import rackfit.no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "OPERATOR_MODULE", "fake_rackfit_operator2")
    monkeypatch.setitem(sys.modules, "kopf", types.ModuleType("kopf"))
    with pytest.raises(ModuleNotFoundError):
        main(["operator"])
