"""make bench's accuracy tables, written into docs/accuracy.md so the doc shows what the code measures now.

Each table sits in the doc between `<!-- make bench: bench/NAME.py -->` and `<!-- end make bench -->`; README.md's
summary of them (each set's median and worst unsafe error, its facts) between `<!-- make bench: bench/summary -->`
and the same end. This script
runs each bench's main, prints its output and puts it between those lines; the error bands' run also rewrites
operator/rackfit/estimator/measured_bands.py. With --check it writes nothing and exits 1 when a block is stale
(tests/unit runs it). With --cases FILE (rows of your own cluster) the training and serving tables are printed for
FILE and the doc is left alone.
Usage: python bench/doc_tables.py [--check | --cases FILE]
"""

from __future__ import annotations

import contextlib
import io
import re
import statistics
import sys
from pathlib import Path

import accuracy
import error_bands
import public_serving
import public_training

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "accuracy.md"
README = ROOT / "README.md"
BENCHES = {"accuracy.py": accuracy.main, "public_training.py": public_training.main,
           "public_serving.py": public_serving.main, "error_bands.py": error_bands.main}
END = "<!-- end make bench -->"


def run(main, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    return rc, out.getvalue().strip("\n")


def _median(values) -> str:
    return f"{statistics.median(abs(v) for v in values):.1f}%"


def summary() -> str:
    """README's "How close it is" table: each set's size, median error, worst error in its unsafe direction (the row
    that has it) and fit/no-fit facts, beside the guide's rule."""
    h200 = accuracy.measure(accuracy.DEFAULT_DATA)
    h = [accuracy.err(r["est"].total_bytes, r["measured"]) for r in h200]
    train = public_training.measure()
    t = [(f"{r['id']} {r['variant']}".strip(), public_training.err(r["rackfit"], r["measured"])) for r in train]
    t_facts = public_training.fit_facts()
    serve = public_serving.results()
    kv = [(r["id"], r["error"]) for r in serve if r["quantity"] == "kv cache"]
    s_errors = [r["error"] for r in serve if r["error"] is not None]
    s_facts = [r for r in serve if r["starts"] is not None]
    hopper = [r["error"] for r in serve
              if r["quantity"] == "kv cache" and r["engine"] == "vllm" and r["gpu"] == "hopper"]
    t_row, t_worst = min(t, key=lambda r: r[1])   # training's unsafe side: memory under
    s_row, s_worst = max(kv, key=lambda r: r[1])  # serving's: KV cache over-promised
    lines = ["| set | rows | rackfit median error | worst unsafe error | guide's rule median error |",
             "|---|---:|---:|---:|---:|",
             f"| H200 single GPU, transformers (`bench/accuracy.py`) | {len(h)} | {_median(h)} | "
             f"{min(h):+.1f}% (memory under) | {_median(accuracy.err(r['guide'], r['measured']) for r in h200)} |",
             f"| {TRAINING_SET} (`bench/public_training.py`) | {len(t)} | {_median(e for _, e in t)} | "
             f"{t_worst:+.1f}% (memory under, {t_row}); fit/no-fit facts "
             f"{sum(f['fits'] == f['said'] for f in t_facts)} of {len(t_facts)} | "
             f"{_median(public_training.err(r['guide'], r['measured']) for r in train)} |",
             f"| {SERVING_SET} (`bench/public_serving.py`) | {len(s_errors)} | {_median(s_errors)} | "
             f"{s_worst:+.1f}% (KV cache over-promised, {s_row}; vLLM on Hopper, {len(hopper)} rows: "
             f"{min(hopper):+.1f}%..{max(hopper):+.1f}%); fit/no-fit facts "
             f"{sum(r['starts'] == r['said'] for r in s_facts)} of {len(s_facts)} | "
             f"{_median(r['rule_error'] for r in serve if r['rule_error'] is not None)} |"]
    return "\n".join(lines)


TRAINING_SET = ("public training: torchtitan (FSDP, TP, PP, per-op SAC, compiled), Megatron (TP, PP, interleaved, "
                "EP), DeepSpeed (ZeRO 0-3), accelerate FSDP1 and FSDP2, HF Trainer (full, LoRA, QLoRA), torchtune and "
                "Answer.AI's fsdp_qlora (LoRA/QLoRA), PEFT, TRL, Axolotl, LLaMA-Factory, ms-swift, Lit-GPT")
SERVING_SET = ("public serving: vLLM (V0 0.2-0.10, V1 0.8-0.34), SGLang, TensorRT-LLM (PyTorch and TRT-engine "
               "backends) KV cache and weights")
SUMMARY = "summary"


def filled(doc: str, name: str, text: str, path: Path) -> str | None:
    """`doc` with `text` between its `make bench: bench/NAME` line and the end line; None (said on stderr) when
    `path` has no such block."""
    m = block(name).search(doc)
    if not m:
        print(f"{path.relative_to(ROOT)} has no block for bench/{name}", file=sys.stderr)
        return None
    return doc[:m.start()] + f"{m.group(1)}\n{text}\n{m.group(2)}" + doc[m.end():]


def block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- make bench: bench/{re.escape(name)} -->\n).*?(\n{re.escape(END)})", re.S)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--cases"]:
        status = 0
        for name in ("public_training.py", "public_serving.py"):
            status |= BENCHES[name](argv)
        return status
    check = argv == ["--check"]
    doc = DOC.read_text()
    status, stale = 0, []
    for name, bench in BENCHES.items():
        if check and bench is error_bands.main:  # the same table, without rewriting measured_bands.py
            rc, text = 0, error_bands.table(error_bands.bands())
        else:
            rc, text = run(bench, [])
        status |= rc
        if not check:
            print(text, end="\n\n")
        new = filled(doc, name, text, DOC)
        if new is None:
            return 2
        if new != doc:
            stale.append(name)
        doc = new
    readme = README.read_text()
    new_readme = filled(readme, SUMMARY, summary(), README)
    if new_readme is None:
        return 2
    if new_readme != readme:
        stale.append(f"{SUMMARY} (README.md)")
    if check:
        if stale:
            print(f"{DOC.relative_to(ROOT)} is stale for {', '.join(stale)}: run `make bench`", file=sys.stderr)
            return 1
        return status
    DOC.write_text(doc)
    README.write_text(new_readme)
    if stale:
        print(f"updated {DOC.relative_to(ROOT)} and README.md: {', '.join(stale)}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
