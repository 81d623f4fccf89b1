"""Serving engines against their own logs -> a markdown table (docs/accuracy.md, "Public serving").

Each row of bench/cases/public/serving.yaml is an engine's start-up log: the KV cache it allocated, in
bytes or tokens, on a known GPU. rackfit's engine model (estimator/engines.py) sizes the same cache; the
rule of thumb beside it is what a user computes from the guide's "2 bytes per parameter" (1 at fp8, half
at 4-bit): the engine's budget less those weights.
Usage: python bench/public_serving.py [--cases] [serving.yaml | ROWS.jsonl]
A .jsonl file holds rows of your own cluster as `rackfit observed -o jsonl` writes them
(rackfit.observed.rows.case); its serving rows (the KV cache the engine allocated) are compared here, its
training rows by bench/public_training.py.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from functools import cache
from pathlib import Path

import yaml

from rackfit.catalog.types import GPU
from rackfit.estimator import Estimate, estimate
from rackfit.estimator.engine_defaults import cuda_total_bytes
from rackfit.estimator.errorband import runtime_of
from rackfit.estimator.params import count_params
from rackfit.models import resolve
from rackfit.spec import parse_spec
from rackfit.units import GiB

RULE = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5, "nf4": 0.5, "mxfp4": 0.5, "nvfp4": 0.5}
CASES = Path(__file__).resolve().parent / "cases" / "public" / "serving.yaml"


def _bytes(v) -> float:
    m = re.fullmatch(r"([\d.]+)GiB", str(v))
    return float(m.group(1)) * GiB if m else float(v)


@cache
def load_cases(path: Path) -> tuple[dict, ...]:
    """A YAML list (bench/cases/public/serving.yaml), or JSON lines as `rackfit observed -o jsonl` writes them
    (rows without a serving engine's KV cache, e.g. training rows, are skipped). Read once per file and run."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return tuple(r for r in rows
                     if "kvCacheTokens" in r.get("measured", {}) or "kvCacheBytes" in r.get("measured", {}))
    return tuple(yaml.safe_load(path.read_text()))


@cache
def rows(path: Path) -> tuple[tuple[dict, Estimate, int, float], ...]:
    """(row, rackfit's estimate, its KV pool, the rule of thumb's pool) per row, estimated once per file and run: the
    table, the components, the error bands and the README summary all read them."""
    out = []
    for row in load_cases(path):
        g = row["gpu"]
        gpu = GPU(model=g["model"], product=g["model"], memoryGB=g["memoryMiB"] / 954, memoryMiB=g["memoryMiB"],
                  architecture=g["architecture"])
        spec = parse_spec(row["spec"])
        est = estimate(spec, gpu=gpu)
        arch = resolve(spec.model)
        p = count_params(arch).total
        tensor = spec.parallelism.tensor if spec.parallelism else 1
        rule_kv = est.engine.gpu_memory_utilization * cuda_total_bytes(gpu) - RULE[spec.precision] * p / tensor
        out.append((row, est, est.kv_cache_pool_bytes, rule_kv))
    return tuple(out)


def _err(pred: float, meas: float) -> float:
    return (pred - meas) / meas * 100


def _setup(row: dict) -> str:
    spec = row["spec"]
    pipeline = spec.get('parallelism', {}).get('pipeline', 1)
    # a preset reshaped by `architecture` (gpt-oss-20b: gpt-oss-120b-mxfp4, fewer layers) goes by the row's name
    name = (row.get('name') if spec['model'].get('architecture') else None) or spec['model'].get('preset')
    return (f"{name or row.get('name', 'custom')} {spec.get('precision', 'bf16')}, "
            f"{row['gpu']['model']} x {spec.get('parallelism', {}).get('tensor', 1)}"
            f"{f' x pipeline {pipeline}' if pipeline > 1 else ''}, {row['version']}")


def results(path: Path = CASES) -> list[dict]:
    """One result per row: id, runtime (the error band's), GPU family, setup, what was compared (`quantity`: kv
    cache, weights, or None for a fit/no-fit fact alone), the logged and rackfit cells, the error (positive:
    rackfit promises more than the engine allocated, the unsafe direction for the cache), the rule of thumb's cell
    and error (KV rows), and the fact: `starts` (the log's, None without one) and `said` (rackfit's)."""
    out = []
    for row, est, pool, rule_kv in rows(path):
        m = row["measured"]
        r = dict(id=row["id"], engine=runtime_of(parse_spec(row["spec"])), gpu=row["gpu"]["architecture"],
                 setup=_setup(row), quantity=None, error=None, rule="", rule_error=None,
                 starts=bool(m["starts"]) if "starts" in m else None, said=bool(est.engine_starts))
        if "kvCacheTokens" in m:
            ours, logged = est.kv_cache_tokens, m["kvCacheTokens"]
            r.update(quantity="kv cache", logged=f"{logged:,} tokens", ours=f"{ours:,}", error=_err(ours, logged))
            if pool:  # the rule's tokens at rackfit's bytes a token; no pool (a refusal) leaves no such ratio
                rule = rule_kv * est.kv_cache_tokens / pool
                r.update(rule=f"{rule:,.0f}", rule_error=_err(rule, logged))
        elif "kvCacheBytes" in m:
            logged = _bytes(m["kvCacheBytes"])
            r.update(quantity="kv cache", logged=f"KV {logged / GiB:.2f} GiB", ours=f"{pool / GiB:.2f}",
                     error=_err(pool, logged), rule=f"{rule_kv / GiB:.2f}", rule_error=_err(rule_kv, logged))
        elif "weightsBytes" in m:
            logged, ours = _bytes(m["weightsBytes"]), est.breakdown.weights_bytes
            r.update(quantity="weights", logged=f"weights {logged / GiB:.2f} GiB", ours=f"{ours / GiB:.2f}",
                     error=_err(ours, logged))
        else:  # a fit/no-fit fact alone: the log (or its reporter) says whether the server came up, no number
            r.update(logged="started" if m["starts"] else "did not start", ours="fits" if r["said"] else "no fit")
        out.append(r)
    return out


def measure(path: Path = CASES) -> list[dict]:
    """The rows with an error (KV cache or weights; facts alone have none to band)."""
    return [r for r in results(path) if r["error"] is not None]


def table(path: Path = CASES) -> tuple[str, list[float]]:
    lines = ["| row | engine | setup | logged | rackfit | error | rule: budget - 2 B/param | error |",
             "|---|---|---|---|---|---:|---|---:|"]
    found = results(path)
    for r in found:
        error = "" if r["error"] is None else f"{r['error']:+.1f}%"
        rule = "" if r["rule_error"] is None else f"{r['rule_error']:+.1f}%"
        lines.append(f"| {r['id']} | {r['engine']} | {r['setup']} | {r['logged']} | {r['ours']} | {error} | "
                     f"{r['rule']} | {rule} |")
    lines.append("")
    errors = [r["error"] for r in found if r["error"] is not None]
    kv = [r["error"] for r in found if r["quantity"] == "kv cache"]
    if errors:  # a file of fit/no-fit facts alone has no error to sum up
        lines.append(f"median |error| {statistics.median(abs(e) for e in errors):.1f}%, "
                     f"worst unsafe error (more KV cache promised than the engine allocated) "
                     f"{max(kv, default=0):+.1f}%, worst underestimate {min(errors):+.1f}% ({len(errors)} rows)")
    facts = [r for r in found if r["starts"] is not None]
    if facts:
        wrong = [f"{r['id']} ({'started' if r['starts'] else 'did not start'}, rackfit: "
                 f"{'fits' if r['said'] else 'no fit'})" for r in facts if r["starts"] != r["said"]]
        lines.append(f"fit/no-fit facts right: {len(facts) - len(wrong)} of {len(facts)}"
                     + (f"; wrong: {', '.join(wrong)}" if wrong else ""))
    return "\n".join(lines), errors


COMPONENTS = [("weights", "weightsBytes", "weights_bytes"),
              ("activation peak", "activationsBytes", "activations_bytes"),
              ("non-torch", "nonTorchBytes", "non_torch_bytes"),
              ("CUDA graphs", "cudaGraphBytes", "cuda_graph_bytes")]


def components(path: Path = CASES) -> str:
    """vLLM's own split of a rank's memory (rows whose log gives the activation peak and non-torch memory, and the
    weights and CUDA graphs where it gives them) against rackfit's, GiB: logged / rackfit (difference), blank where
    the log gives none."""
    lines = ["| row | setup | " + " | ".join(f"{name}: logged / rackfit" for name, _, _ in COMPONENTS) + " |",
             "|---|---|" + "---:|" * len(COMPONENTS)]
    for row, est, _pool, _rule in rows(path):
        m = row["measured"]
        if not all(key in m for key in ("activationsBytes", "nonTorchBytes")):
            continue
        spec = row["spec"]
        par = spec.get("parallelism", {})
        # a preset whose architecture the row overrides (S46: gpt-oss-20b on gpt-oss-120b's) goes by the row's name
        shape = (row.get("name") if spec["model"].get("architecture") and row.get("name")
                 else spec["model"].get("preset") or row.get("name", "custom"))
        setup = (f"{shape}, tensor {par.get('tensor', 1)}"
                 + (f" x pipeline {par['pipeline']}" if par.get("pipeline", 1) > 1 else ""))
        cells = []
        for _, key, field in COMPONENTS:
            if key not in m:
                cells.append("")
                continue
            logged, ours = _bytes(m[key]) / GiB, getattr(est.breakdown, field) / GiB
            cells.append(f"{logged:.2f} / {ours:.2f} ({ours - logged:+.2f})")
        lines.append(f"| {row['id']} | {setup} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str]) -> int:
    if argv[:1] == ["--cases"]:  # rows of your own cluster: rackfit observed -o jsonl > FILE
        argv = argv[1:]
    path = Path(argv[0]) if argv else CASES
    if not load_cases(path):
        print(f"no serving rows (an engine's KV cache) in {path}")
        return 0
    text, _ = table(path)
    print(text)
    split = components(path)
    if split:
        print("\nvLLM's logged split of a rank's memory against rackfit's, GiB (logged / rackfit (difference)):\n")
        print(split)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
