"""bench/public_serving.py: a row whose log gives only whether the engine came up (`measured: {starts: ...}`, no
number) is a fit/no-fit fact: listed with rackfit's verdict, counted among the facts, left out of the errors and of
the error bands (measure())."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench_modules import bench

ROOT = Path(__file__).resolve().parents[2]


def _rows(tmp_path: Path) -> Path:
    rtx3090 = {"model": "RTX 3090", "memoryMiB": 24576, "architecture": "ampere"}
    rows = [
        # a number: S7's log (kv cache tokens), a fact beside it
        {"id": "N1", "version": "V0", "gpu": rtx3090, "measured": {"kvCacheTokens": 31232, "starts": True},
         "spec": {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                  "inference": {"contextLength": 20000, "engineVersion": "0.6.4"}}},
        # a fact alone that rackfit gets right (8B at 1,024 tokens fits a 24 GB card) ...
        {"id": "F1", "version": "V0", "gpu": rtx3090, "measured": {"starts": True},
         "spec": {"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                  "inference": {"contextLength": 1024, "engineVersion": "0.6.4"}}},
        # ... and one it gets wrong by construction (70B in bf16 on one 24 GB card cannot start)
        {"id": "F2", "version": "V0", "gpu": rtx3090, "measured": {"starts": True},
         "spec": {"model": {"preset": "llama-3.1-70b"}, "workload": "inference",
                  "inference": {"contextLength": 1024, "engineVersion": "0.6.4"}}},
    ]
    path = tmp_path / "facts.yaml"
    path.write_text(yaml.safe_dump(rows))
    return path


def test_fact_only_rows_are_facts_not_errors(tmp_path):
    ps = bench("public_serving")
    path = _rows(tmp_path)
    assert [r["id"] for r in ps.measure(path)] == ["N1"]
    text, errors = ps.table(path)
    assert len(errors) == 1
    assert "| F1 | vllm |" in text and "| started | fits |" in text
    assert "| F2 | vllm |" in text and "| started | no fit |" in text
    assert "fit/no-fit facts right: 2 of 3; wrong: F2 (started, rackfit: no fit)" in text
