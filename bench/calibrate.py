"""Re-derive the estimator's fitted constants from the H200 rows (in-sample) -> a markdown table.

Each constant is re-derived from the rows it governs, every other constant held at its value in the
code, and compared with that value at the precision the code writes it:
- CUDA_CONTEXT_BYTES: the `environment` row's `used_after_cublas_bytes`.
- Allocator slack shares (SLACK_*): per row, the measured slack (`max_reserved_bytes` less the measured
  allocated peak: max(`step_peak_bytes`) for training, the model's `weights` row `allocated_bytes` +
  `peak_over_weights_bytes` for a prefill) over the bytes the estimator applies the share to
  (activations + gradients; KV cache + activations); median over the rows of the estimator's branch.
  SLACK_STATE_SPLIT is what its rows need on top of SLACK_RECOMPUTE.
- Activation bytes per token (activations.py): per row, the value at which the estimated allocated
  peak (total less overhead) equals max(`step_peak_bytes`) (the estimate is linear in each);
  median over the rows whose estimate the constant moves.

Usage: python bench/calibrate.py [--rows] [DATA.jsonl ...]  (default: bench/cases/h200/*.jsonl)
--rows also prints each row's value.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import rackfit.estimator as est_mod
import rackfit.estimator.activations as act_mod
from rackfit.estimator import estimate
from rackfit.spec import parse_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy


@dataclass
class Derived:
    name: str
    code: float
    step: float              # the precision the code writes the constant at
    value: float | None      # re-derived; None when no row sets it
    how: str
    rows: dict[str, float] = field(default_factory=dict)  # row -> that row's value

    @property
    def agrees(self) -> str:
        if self.value is None:
            return "n/a"
        return "yes" if abs(round(self.value / self.step) * self.step - self.code) < self.step / 2 else "NO"


def _estimate(row: dict, arch: dict | None):
    hf = {**arch, "model_type": accuracy._model_type(row["model"])} if arch else None
    return estimate(parse_spec(accuracy.spec_for(row, arch)), hf_config=hf)


def _allocated(e) -> int:
    """The estimate less overhead (context, NCCL, slack): what the allocator has allocated at the peak."""
    return e.total_bytes - e.breakdown.overhead_bytes


def _median(name, code, step, how, rows: dict[str, float]) -> Derived:
    return Derived(name, code, step, statistics.median(rows.values()) if rows else None, how, rows)


def derive(paths: list[Path]) -> list[Derived]:
    rows = list(accuracy.rows(paths))
    env = next((e for _, e, _, _ in rows if e), None)
    weights = {r["model"]: r for _, _, _, r in rows if r["case"] == "weights"}
    out = [Derived("CUDA_CONTEXT_BYTES", est_mod.CUDA_CONTEXT_BYTES, 1,
                   env["used_after_cublas_bytes"] if env else None, "environment row: used_after_cublas_bytes",
                   {"environment": env["used_after_cublas_bytes"]} if env else {}),
           Derived("NCCL_BYTES", est_mod.NCCL_BYTES, 1, None,
                   "not measured: every row is one GPU (NCCL defaults; inference without a serving engine only, "
                   "training counts communicators in estimator/comms.py)")]

    # allocator slack: measured slack over the estimator's transient bytes, by branch of the estimator
    share: dict[str, dict[str, float]] = {"prefill": {}, "training": {}, "recompute": {}, "split": {}}
    for _, _, arch, row in rows:
        if row["case"] == "weights":
            continue
        e = _estimate(row, arch)
        b = e.breakdown
        if row["case"] == "prefill":
            peak = weights[row["model"]]["allocated_bytes"] + row["peak_over_weights_bytes"]
            transient, branch = b.kv_cache_bytes + b.activations_bytes, "prefill"
        else:
            peak = max(row["step_peak_bytes"])
            transient = b.activations_bytes + b.gradients_bytes
            full = row["mode"].startswith("full")
            branch = ("training" if not row["checkpointing"] else
                      "split" if full and e.peak_phase != "optimizer step" else "recompute")
        share[branch][accuracy.describe(row)] = (row["max_reserved_bytes"] - peak) / transient
    slack = "median of (max_reserved - measured allocated peak) / (estimated transient bytes)"
    out += [
        _median("SLACK_PREFILL", est_mod.SLACK_PREFILL, 0.01, slack + "; prefill rows", share["prefill"]),
        _median("SLACK_TRAINING", est_mod.SLACK_TRAINING, 0.01, slack + "; train rows without checkpointing",
                share["training"]),
        _median("SLACK_RECOMPUTE", est_mod.SLACK_RECOMPUTE, 0.01,
                slack + "; checkpointed train rows: LoRA, and full fine-tunes peaking at the optimizer step",
                share["recompute"]),
        _median("SLACK_STATE_SPLIT", est_mod.SLACK_STATE_SPLIT, 0.01,
                "the same share less SLACK_RECOMPUTE, median; checkpointed full fine-tunes peaking in the loss phase",
                {k: v - est_mod.SLACK_RECOMPUTE for k, v in share["split"].items()}),
    ]

    # activation bytes per token: solve each row's allocated peak for the constant
    for name, step in (("NORM_BYTES_PER_H", 1), ("AUTOCAST_RESIDUAL_BYTES_PER_H", 1), ("LORA_INPUT_BYTES", 0.5)):
        code = getattr(act_mod, name)
        solved = {}
        for _, _, arch, row in rows:
            if row["case"] != "train":
                continue
            a0 = _allocated(_estimate(row, arch))
            try:
                setattr(act_mod, name, code + 1)
                slope = _allocated(_estimate(row, arch)) - a0
            finally:
                setattr(act_mod, name, code)
            if abs(slope) > 1 << 20:  # rows whose estimate the constant moves
                solved[accuracy.describe(row)] = code + (max(row["step_peak_bytes"]) - a0) / slope
        out.append(_median(name, code, step, "median of the value that makes the estimated allocated peak "
                           "equal max(step_peak_bytes); train rows it moves", solved))
    return out


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1 << 20:
        return f"{x:,.0f}"
    return f"{x:.3f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def table(derived: list[Derived]) -> str:
    lines = ["| constant | in code | re-derived | agrees | rows used (in-sample) | how |",
             "|---|---:|---:|---|---|---|"]
    for d in derived:
        used = "; ".join(d.rows) or "none"
        lines.append(f"| {d.name} | {_fmt(d.code)} | {_fmt(d.value)} | {d.agrees} | {used} | {d.how} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    show_rows = "--rows" in argv
    paths = [Path(p) for p in argv if p != "--rows"] or accuracy.DEFAULT_DATA
    if not paths:
        print(f"no measurements found in {accuracy.CASES}: pass JSONL files", file=sys.stderr)
        return 2
    derived = derive(paths)
    print(table(derived))
    if show_rows:
        for d in derived:
            print(f"\n{d.name} (in code {_fmt(d.code)}):")
            for row, v in d.rows.items():
                print(f"  {row}: {_fmt(v)}")
    differ = [d.name for d in derived if d.agrees == "NO"]
    print("\nre-derived at the code's precision:", "all agree" if not differ else "differ: " + ", ".join(differ))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
