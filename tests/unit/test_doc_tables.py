"""docs/accuracy.md shows the accuracy tables the code measures now (make bench writes them there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench_modules import bench

ROOT = Path(__file__).resolve().parents[2]


def _check() -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "operator")}
    return subprocess.run([sys.executable, str(ROOT / "bench" / "doc_tables.py"), "--check"], env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_docs_tables_are_what_make_bench_prints_now():
    r = _check()
    assert r.returncode == 0, r.stderr


def test_a_stale_table_is_named(tmp_path, monkeypatch, capsys):
    doc_tables = bench("doc_tables")
    stale = doc_tables.DOC.read_text().replace("| T1 eager |", "| T1 stale |", 1)
    assert stale != doc_tables.DOC.read_text()
    doc = tmp_path / "accuracy.md"
    doc.write_text(stale)
    monkeypatch.setattr(doc_tables, "DOC", doc)
    monkeypatch.setattr(doc_tables, "ROOT", tmp_path)
    assert doc_tables.main(["--check"]) == 1
    assert "is stale for public_training.py: run `make bench`" in capsys.readouterr().err
    assert doc.read_text() == stale  # --check writes nothing


def test_a_stale_readme_summary_is_named(tmp_path, monkeypatch, capsys):
    """README.md's "How close it is" table is make bench's summary too: a hand-edited number there is stale."""
    doc_tables = bench("doc_tables")
    text = doc_tables.README.read_text()
    line = next(x for x in text.splitlines() if x.startswith("| H200 single GPU"))
    stale = text.replace(line, line.replace("| 32 |", "| 31 |"), 1)
    assert stale != text
    readme = tmp_path / "README.md"
    readme.write_text(stale)
    monkeypatch.setattr(doc_tables, "README", readme)
    assert doc_tables.main(["--check"]) == 1
    assert "summary (README.md)" in capsys.readouterr().err
    assert readme.read_text() == stale
