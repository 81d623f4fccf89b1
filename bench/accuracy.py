"""Estimator accuracy against real GPU measurements -> a markdown table (docs/accuracy.md).

For each measured row, the estimate of the same workload on one GPU is compared with what the GPU
held at its peak: the caching allocator's peak reservation plus the CUDA context
(`max_reserved_bytes + used_after_cublas_bytes`). The guide's rules and accelerate's rule are shown
beside it. Usage: python bench/accuracy.py [DATA.jsonl ...]  (default: bench/cases/h200/*.jsonl,
the H200 rows described in bench/cases/h200/README.md)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from rackfit.estimator import estimate
from rackfit.spec import parse_spec
from rackfit.units import GB

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "bench" / "cases" / "h200"
DEFAULT_DATA = sorted(CASES.glob("*.jsonl"))

_MODES = {
    "full_bf16_adamw": dict(method="full", masterWeights="none"),
    "full_mixed_adamw": dict(method="full", masterWeights="fp32"),
    "lora_r16": dict(method="lora", loraRank=16),
}


def spec_for(row: dict, arch: dict | None) -> dict:
    """The LLMWorkload spec that describes a measured row: its config.json, else the preset of that name."""
    model = {"huggingFaceConfig": "config.json"} if arch else {"preset": row["model"].lower()}
    if row["case"] == "train":
        training = dict(_MODES[row["mode"]], optimizer="adamw", microBatchSize=row["batch"],
                        sequenceLength=row["seq"],
                        activationCheckpointing="full" if row["checkpointing"] else "none")
        return dict(model=model, workload="training", precision="bf16", training=training)
    if row["case"] == "prefill":
        tokens = row["batch"] * row["seq"]
        inference = dict(engine="transformers", contextLength=row["seq"], concurrency=row["batch"],
                         prefillChunkTokens=tokens)
        return dict(model=model, workload="inference", precision="bf16", inference=inference)
    # a bare load of the weights: an inference of one token
    return dict(model=model, workload="inference", precision="bf16",
                inference=dict(engine="transformers", contextLength=1, concurrency=1))


def rules_of_thumb(row: dict, n_params: int) -> tuple[float, float]:
    """The guide's rules (2 B/param; fine-tuning = 3-4x inference, upper end) and accelerate's
    estimate-memory (training with Adam: 4x the fp32... 8 B/param in bf16; inference: the weights)."""
    inference = 2 * n_params
    if row["case"] == "train":
        return 4 * inference, 8 * n_params
    return inference, inference


def rows(paths: list[Path]):
    for path in paths:
        env, archs = None, {}
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["case"] == "environment":
                env = row
            if "arch" in row:
                archs[row["model"]] = row["arch"]
            if row["case"] in ("train", "prefill", "weights") and not row.get("oom") and not row.get("error"):
                yield path.name, env, row.get("arch") or archs.get(row["model"]), row


def measure(paths: list[Path]) -> list[dict]:
    out = []
    for source, env, arch, row in rows(paths):
        spec = parse_spec(spec_for(row, arch))
        hf = {**arch, "model_type": _model_type(row["model"])} if arch else None
        est = estimate(spec, hf_config=hf)
        measured = row.get("max_reserved_bytes", row.get("reserved_bytes")) + env["used_after_cublas_bytes"]
        guide, accel = rules_of_thumb(row, row["n_params"])
        out.append(dict(source=source, row=row, est=est, measured=measured, guide=guide, accelerate=accel))
    return out


def _model_type(name: str) -> str:
    return "qwen2" if name.lower().startswith("qwen2") else name.split("-")[0].lower()


def describe(row: dict) -> str:
    if row["case"] == "train":
        ck = " ckpt" if row["checkpointing"] else ""
        return f"{row['model']} train {row['mode']} b{row['batch']} s{row['seq']}{ck}"
    if row["case"] == "prefill":
        return f"{row['model']} prefill b{row['batch']} s{row['seq']}"
    return f"{row['model']} weights bf16"


def err(pred: float, meas: float) -> float:
    return (pred - meas) / meas * 100


def table(results: list[dict]) -> str:
    lines = ["| workload (1 x H200) | measured GB | rackfit GB | error "
             "| guide rule GB | error | accelerate GB | error |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        m, e = r["measured"], r["est"].total_bytes
        lines.append(f"| {describe(r['row'])} | {m / GB:.1f} | {e / GB:.1f} | {err(e, m):+.1f}% | "
                     f"{r['guide'] / GB:.1f} | {err(r['guide'], m):+.0f}% | "
                     f"{r['accelerate'] / GB:.1f} | {err(r['accelerate'], m):+.0f}% |")
    errors = [err(r["est"].total_bytes, r["measured"]) for r in results]
    g = [abs(err(r["guide"], r["measured"])) for r in results]
    a = [abs(err(r["accelerate"], r["measured"])) for r in results]
    lines.append("")
    lines.append(f"rackfit: {len(errors)} rows, median |error| {statistics.median(map(abs, errors)):.1f}%, "
                 f"worst {max(errors, key=abs):+.1f}%, worst underestimate {min(errors):+.1f}%, "
                 f"rows within +-10%: {sum(abs(x) <= 10 for x in errors)}/{len(errors)}. "
                 f"Guide rule median |error| {statistics.median(g):.0f}%; accelerate {statistics.median(a):.0f}%.")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or DEFAULT_DATA
    if not paths:
        print(f"no measurements found in {CASES}: pass JSONL files", file=sys.stderr)
        return 2
    results = measure(paths)
    print(table(results))
    errors = [err(r["est"].total_bytes, r["measured"]) for r in results]
    ok = all(abs(x) <= 10 for x in errors) and statistics.median(map(abs, errors)) <= 5 and min(errors) >= -5
    print("targets (every row +-10%, median <= 5%, no underestimate beyond -5%):", "met" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
