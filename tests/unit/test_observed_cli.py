"""`rackfit observed`: estimate beside status.observed per workload, and -o jsonl rows that
bench/public_serving.py --cases takes (the calibration loop of issue 21). The cluster is faked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bench_modules import bench

from rackfit.api.status import plan_view
from rackfit.catalog import load_catalog
from rackfit.cli import main
from rackfit.planner import plan
from rackfit.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _workload(example: str, observed: dict, holds: tuple[str, str]) -> dict:
    docs = yaml.safe_load_all((ROOT / "examples" / example).read_text())
    doc = next(d for d in docs if d and d.get("kind") == "LLMWorkload")
    view = plan_view(plan(parse_spec(doc["spec"]), load_catalog()))
    status = {"estimate": view["estimate"], "placement": view["placement"], "observed": observed,
              "conditions": [{"type": "EstimateHolds", "status": holds[0], "reason": holds[1], "message": "",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    return {"metadata": {"namespace": "ml", "name": doc["metadata"]["name"]}, "spec": doc["spec"], "status": status}


@pytest.fixture
def cluster(monkeypatch):
    from rackfit.operator import kube
    serve = _workload("vllm-llama-3.1-70b.yaml", {"kvCacheTokens": 150000, "maxConcurrency": 18.3,
                                                  "source": "vllm:cache_config_info",
                                                  "observedAt": "2026-01-01T00:00:00Z"}, ("True", "WithinEstimate"))
    train = _workload("llama-8b-full-training.yaml", {"gpuMemoryBytes": 70 * 2**30, "source": "DCGM_FI_DEV_FB_USED",
                                                      "observedAt": "2026-01-01T00:00:00Z"},
                      ("False", "ObservedAboveEstimate"))
    other = {**train, "metadata": {"namespace": "other", "name": "x"}}
    monkeypatch.setattr(kube, "list_workloads", lambda: [serve, train, other])
    return serve, train


def test_table_and_json(cluster, capsys):
    assert main(["observed", "-n", "ml"]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATEHOLDS" in out and "150,000" in out and "70.0 GiB" in out and "ObservedAboveEstimate" in out
    assert "other" not in out
    assert main(["observed", "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["workloads"]
    assert len(rows) == 3
    serve = next(r for r in rows if r["compare"] == "kv_cache")
    assert serve["observed"]["kvCacheTokens"] == 150000 and serve["estimate"]["requiredKVTokens"] > 0


def test_jsonl_rows_feed_the_serving_bench(cluster, capsys, tmp_path):
    assert main(["observed", "-o", "jsonl", "-n", "ml"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {r["id"] for r in lines} == {f"ml/{w['metadata']['name']}" for w in cluster}
    for r in lines:
        assert {"id", "source", "version", "gpu", "spec", "measured", "meaning"} <= set(r)
        assert "target" not in r["spec"]
    cases = tmp_path / "mine.jsonl"
    cases.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    public_serving = bench("public_serving")
    text, errors = public_serving.table(cases)
    assert len(errors) == 1 and "150,000 tokens" in text  # the serving row; the training row is not a KV case
