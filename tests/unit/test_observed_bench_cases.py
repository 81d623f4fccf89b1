"""`make bench CASES=FILE` (issue 21): the rows `rackfit observed -o jsonl` writes (rackfit.observed.rows.case)
feed bench/public_serving.py (an engine's KV cache) and bench/public_training.py (a training peak, as
nvidia-smi shows it), end to end: rows written by rows.case, read by each bench's loader and measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bench_modules import bench

from rackfit.api.status import plan_view
from rackfit.catalog import load_catalog
from rackfit.estimator import estimate
from rackfit.observed.rows import case
from rackfit.planner import plan
from rackfit.spec import parse_spec
from rackfit.units import GiB

ROOT = Path(__file__).resolve().parents[2]
AT = "2026-01-01T00:00:00Z"


def _workload(example: str, name: str, observed: dict, **inference) -> dict:
    """An LLMWorkload as the API serves it once placed and observed."""
    doc = next(d for d in yaml.safe_load_all((ROOT / "examples" / example).read_text()) if d and
               d.get("kind") == "LLMWorkload")
    spec = doc["spec"]
    if inference:
        spec = {**spec, "inference": {**spec["inference"], **inference}}
    view = plan_view(plan(parse_spec(spec), load_catalog()))
    status = {"estimate": view["estimate"], "placement": view["placement"], "observed": {**observed, "observedAt": AT}}
    return {"metadata": {"namespace": "ml", "name": name}, "spec": spec, "status": status}


@pytest.fixture
def rows_file(tmp_path) -> Path:
    catalog = load_catalog()
    objs = [_workload("vllm-llama-3.1-70b.yaml", "chat", {"kvCacheTokens": 150000, "maxConcurrency": 18.3,
                                                          "source": "vllm:cache_config_info"}),
            _workload("llama-8b-full-training.yaml", "train", {"gpuMemoryBytes": 70 * GiB,
                                                               "source": "DCGM_FI_DEV_FB_USED (max over 1h)"}),
            # serving with transformers: its framebuffer peak is observed, but no bench compares it yet
            _workload("vllm-llama-3.1-70b.yaml", "hf", {"gpuMemoryBytes": 60 * GiB,
                                                        "source": "DCGM_FI_DEV_FB_USED (max over 1h)"},
                      engine="transformers")]
    rows = [case(o, catalog) for o in objs]
    assert all(rows)
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_serving_rows_feed_public_serving(rows_file):
    public_serving = bench("public_serving")
    cases = public_serving.load_cases(rows_file)
    assert [c["id"] for c in cases] == ["ml/chat"]
    [result] = public_serving.measure(rows_file)
    assert result["quantity"] == "kv cache" and result["engine"] == "vllm"
    text, errors = public_serving.table(rows_file)
    assert len(errors) == 1 and "| ml/chat |" in text and "150,000 tokens" in text


def test_training_rows_feed_public_training(rows_file):
    public_training = bench("public_training")
    [c] = public_training.load_cases(rows_file)
    row = next(json.loads(line) for line in rows_file.read_text().splitlines() if '"ml/train"' in line)
    assert c["id"] == "ml/train" and c["gpu"] == row["gpu"]["architecture"]  # the regime's GPU family
    assert c["measured"] == [{"variant": "", "quantity": "device_used", "gib": 70.0}]
    [r] = public_training.measure(rows_file)
    # device_used: the whole estimate, as the operator made it for the placed layout, its cuBLAS workspaces sized by
    # the row's GPU architecture (megatron_buffers.hopper_or_later)
    assert r["rackfit"] == estimate(parse_spec(c["spec"]), gpu_architecture=c["gpu"]).total_bytes
    assert r["measured"] == 70 * GiB and r["framework"] == c["spec"]["training"]["framework"]
    assert "| ml/train |" in public_training.table([r])


def test_make_bench_cases_runs_both_benches_on_the_file(rows_file):
    dry = subprocess.run(["make", "-n", "bench", f"CASES={rows_file}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert f"bench/doc_tables.py --cases {rows_file}" in dry
    assert "--cases" not in subprocess.run(["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True,
                                           check=True).stdout
    env = {"PYTHONPATH": f"{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"}
    doc = (ROOT / "docs" / "accuracy.md").read_text()
    for script, rows in (("public_serving.py", ["| ml/chat |"]), ("public_training.py", ["| ml/train |"]),
                         ("doc_tables.py", ["| ml/chat |", "| ml/train |"])):
        out = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--cases", str(rows_file)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert all(row in out.stdout for row in rows) and "ml/hf" not in out.stdout
    assert (ROOT / "docs" / "accuracy.md").read_text() == doc  # your own rows never go into the docs


def test_a_file_without_rows_of_its_kind_is_said_not_failed(tmp_path):
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    env = {"PYTHONPATH": f"{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"}
    for script in ("public_serving.py", "public_training.py"):
        out = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--cases", str(empty)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "no " in out.stdout, out.stderr


def test_a_training_file_of_facts_alone_lists_them(tmp_path):
    """A pass whose rows are all fit/no-fit facts (no measured number) still gets its facts table."""
    public_training = bench("public_training")
    [row] = [c for c in yaml.safe_load((ROOT / "bench/cases/public/training.yaml").read_text())["cases"]
             if c["id"] == "T1980"]
    facts = tmp_path / "facts.yaml"
    facts.write_text(yaml.safe_dump({"cases": [row]}))
    assert not public_training.measure(facts)
    env = {"PYTHONPATH": f"{ROOT / 'operator'}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "public_training.py"), str(facts)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "fit/no-fit facts right: 1 of 1" in out.stdout and "no training rows" not in out.stdout
