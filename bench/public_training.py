"""rackfit against public training measurements (bench/cases/public/training.yaml) -> a markdown table.

Each published number is compared with the estimate's comparable quantity, as the runtime logged it:
- max_reserved (torchtitan): the estimate less the CUDA context and NCCL buffers (allocated + allocator slack);
- max_allocated (Megatron-LM, DeepSpeed, HF): the estimate less its overhead (context, NCCL, slack), and under fsdp
  and deepspeed less the gradient blocks the estimate holds only as cached (RuntimePeak.cached_gradients) and the
  16-bit logits' block transformers before 4.46 leaves cached at the loss (RuntimePeak.cached_logits; under framework
  transformers the estimate counts it in its overhead);
  Megatron logs its last rank, so with pipeline stages the last stage's (one micro-batch, the loss);
- steady: the model states kept between steps (weights, gradients, optimizer states; under Megatron with a 16-bit
  gradient buffer also the step's fp32 copies of the gradients, held until the next step's zero_grad,
  RuntimePeak.after_step);
- steady_with_logits: the states plus the last micro-batch's 16-bit logits, where the script reads
  memory_allocated() while its loop variable still holds them (DeepSpeedExamples' train.py);
- device_used (nvidia-smi): the whole estimate;
- wrap_reserved: torch.cuda.memory_reserved() read as FSDP1's constructor returns (fsdp_qlora's train.py logs it,
  reserved_after_model_wrap): the wrap's peak and the blocks it leaves cached (fsdp.fsdp1_wrap_peak).
Beside it, the guide's rule (fine-tuning = 4x inference, 2 bytes per parameter: 8 B/param), divided by the
GPUs the model is sharded over. Out of sample: no constant of the estimator was set from these rows
(see docs/accuracy.md, "Public training measurements").
Usage: python bench/public_training.py [--cases] [CASES.yaml | ROWS.jsonl]
A .jsonl file holds rows of your own cluster as `rackfit observed -o jsonl` writes them
(rackfit.observed.rows.case); its training rows are compared here, each a `device_used` number (the peak of
DCGM_FI_DEV_FB_USED is what nvidia-smi shows), and its serving rows by bench/public_serving.py.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import yaml

from rackfit.estimator import CUDA_CONTEXT_BYTES, estimate, trainer_allocated_peak, training_peak, training_states
from rackfit.estimator.comms import training_nccl_bytes
from rackfit.estimator.errorband import runtime_of
from rackfit.estimator.megatron_buffers import torch_workspace_bytes_outside_megatron
from rackfit.models import resolve
from rackfit.spec import parse_spec
from rackfit.units import GiB

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "bench" / "cases" / "public" / "training.yaml"


def _merge(spec: dict, m: dict) -> dict:
    """The case's spec with a measurement's `model` (in place of the case's), `training` and `parallelism` overrides."""
    out = {**spec, "training": {**spec["training"], **m.get("training", {})}}
    if "model" in m:
        out["model"] = m["model"]
    if "parallelism" in m:
        out["parallelism"] = {**spec.get("parallelism", {}), **m["parallelism"]}
    return out


def comparable(quantity: str, spec, est, architecture: str | None = None) -> int:
    """The part of the estimate that the logged number measures (bytes), on a GPU of `architecture` (the case's
    `gpu`, which sizes the cuBLAS workspaces as `estimate` was told)."""
    if quantity == "device_used":
        return est.total_bytes
    if quantity == "max_allocated":
        if spec.training.framework == "megatron" and est.layout.pipeline > 1:
            # Megatron logs its last rank, the last pipeline stage: one micro-batch in flight, the loss
            r = training_peak(spec, est.layout, stage="last", gpu_architecture=architecture)
            return r.weights + r.gradients + r.optimizer + r.activations
        if spec.training.framework in ("fsdp", "deepspeed") and est.peak_phase != "load":
            # gradient blocks another stream made and freed (FSDP's post-backward stream, DeepSpeed's reduction
            # stream) are reserved at the loss backward, not allocated (frameworks.grads_at_loss_backward,
            # RuntimePeak.cached_gradients)
            r = training_peak(spec, est.layout, gpu_architecture=architecture)
            # and the blocks ZeRO-1/2's step leaves reserved beside its peak (zero.zero12_step_cached)
            ws = torch_workspace_bytes_outside_megatron(spec.training, architecture)
            # and the 16-bit logits' block transformers before 4.46 frees at its upcast (RuntimePeak.cached_logits)
            # at a step peak, what the step holds live: ZeRO-1/2 keeps no gradient between steps (its states), yet
            # its 16-bit gradient partition is alive at the step's first moment (zero.zero12_step)
            step = (r.weights + r.gradients + r.optimizer if est.peak_phase == "optimizer step"
                    else r.states + r.step_transient)
            return max(r.states + r.backward_transient - r.cached_gradients - r.cached_logits,
                       step - r.step_cached) + ws
        # torch's cuBLAS workspaces are in memory_allocated; the estimate counts them in its overhead outside Megatron
        ws = torch_workspace_bytes_outside_megatron(spec.training, architecture)
        allocated = est.total_bytes - est.breakdown.overhead_bytes + ws
        if spec.training.framework == "transformers" and est.peak_phase == "optimizer step":
            # the estimate's moment is the one reserving the most; max_memory_allocated is the step's largest
            return max(allocated, trainer_allocated_peak(spec, est.layout) + ws)
        return allocated
    if quantity == "max_reserved":
        nccl = training_nccl_bytes(spec.training, est.layout, moe=resolve(spec.model).is_moe)
        return est.total_bytes - CUDA_CONTEXT_BYTES - nccl - est.breakdown.non_torch_bytes
    if quantity == "steady_with_logits":
        # memory_allocated() read after the training loop while the script's loop variable still holds the last
        # micro-batch's logits (DeepSpeedExamples training/bf16_master_weight/train.py: `logits = model_engine(...)`
        # in the loop, get_memory_stats() after it): the states plus those 16-bit logits (the module is bf16)
        tr = spec.training
        logits = tr.micro_batch_size * tr.sequence_length * resolve(spec.model).vocab_size * 2 // est.layout.tensor
        return comparable("steady", spec, est, architecture) + logits
    if quantity == "wrap_reserved":
        r = training_peak(spec, est.layout, gpu_architecture=architecture)
        return r.load + r.load_cached
    if quantity == "steady":
        ws = torch_workspace_bytes_outside_megatron(spec.training, architecture)   # allocated, in the overhead
        if spec.training.framework == "transformers":  # a lone GPU frees its gradients after the step
            s = training_states(spec, est.layout)
            return s.weights + s.optimizer + (s.gradients if est.layout.data > 1 else 0) + ws
        # and what the step leaves allocated until the next one begins (RuntimePeak.after_step: Megatron's fp32 copy
        # of a 16-bit gradient buffer, freed by the next step's zero_grad)
        r = training_peak(spec, est.layout, gpu_architecture=architecture)
        return r.states + r.after_step + ws
    raise ValueError(f"unknown quantity {quantity!r}")


def summary(spec, est) -> str:
    """framework, layout, micro-batch x sequence, checkpointing, precision regime, in a few words."""
    tr, lay = spec.training, est.layout
    split = " x ".join(f"{k[0].upper()}{v}" for k, v in (("data", lay.data), ("tensor", lay.tensor),
                                                         ("pipeline", lay.pipeline)) if v > 1)
    extras = [f"ZeRO-{tr.zero_stage}" if tr.zero_stage else "",
              f"{tr.virtual_stages} chunks a stage" if tr.virtual_stages and lay.pipeline > 1 else "",
              "compile" if tr.compile else "",
              f"{tr.method} r{tr.rank}" if tr.method != "full" else
              "fp32 masters" if tr.master_weights == "fp32" else f"pure {spec.precision}",
              f"{tr.activation_checkpointing} AC"]
    return (f"{tr.framework} {spec.model.label}, {split or 'one GPU'}, b{tr.micro_batch_size} "
            f"s{tr.sequence_length}, " + ", ".join(x for x in extras if x))


def observed_case(row: dict) -> dict | None:
    """A `rackfit observed -o jsonl` row as a case of training.yaml: a training workload's peak framebuffer use
    of its busiest GPU (`measured.peakBytes`) is what nvidia-smi shows, quantity device_used. None for other
    rows: the serving engines' KV cache (bench/public_serving.py), and serving with engine transformers,
    whose framebuffer peak no bench compares yet."""
    peak = (row.get("measured") or {}).get("peakBytes")
    spec = row.get("spec") or {}
    if peak is None or spec.get("workload") != "training":
        return None
    gpu = row.get("gpu")
    return {"id": row["id"], "source": row.get("source", ""), "gpu": gpu.get("architecture") if isinstance(gpu, dict)
            else gpu, "setup": row.get("meaning", ""), "spec": spec,
            "measured": [{"variant": "", "quantity": "device_used", "gib": peak / GiB}]}


@cache
def load_cases(path: Path) -> tuple[dict, ...]:
    """training.yaml's cases, or the training rows of a `rackfit observed -o jsonl` file (.jsonl). Read once per file
    and run."""
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return tuple(c for c in map(observed_case, rows) if c is not None)
    return tuple(yaml.safe_load(path.read_text())["cases"])


@cache
def fit_facts(path: Path = CASES) -> tuple[dict, ...]:
    """The cases' fit/no-fit facts: a stated setup that ran (`fits: true`) or died with CUDA out of memory
    (`fits: false`) on a GPU of `capacityGib` (torch's total capacity, as its OOM message prints it). rackfit says
    it fits when its whole estimate (context, NCCL and allocator slack included) is within that capacity."""
    out = []
    for case in load_cases(path):
        for f in case.get("facts", []):
            spec = parse_spec(_merge(case["spec"], f))
            est = estimate(spec, gpu_architecture=case.get("gpu"))   # the case's GPU architecture, where named
            out.append(dict(id=case["id"], variant=f.get("variant", ""), setup=summary(spec, est),
                            capacity=f["capacityGib"] * GiB, fits=bool(f["fits"]), rackfit=est.total_bytes,
                            said=est.total_bytes <= f["capacityGib"] * GiB))
    return tuple(out)


def facts_table(facts: Sequence[dict]) -> str:
    lines = ["| fact | setup (rackfit spec) | GPU capacity GiB | ran | rackfit GiB | rackfit says |",
             "|---|---|---:|---|---:|---|"]
    for f in facts:
        lines.append(f"| {f['id']} {f['variant']}".rstrip() + f" | {f['setup']} | {f['capacity'] / GiB:.2f} | "
                     f"{'yes' if f['fits'] else 'OOM'} | {f['rackfit'] / GiB:.2f} | "
                     f"{'fits' if f['said'] else 'no fit'} |")
    wrong = [f"{f['id']} {f['variant']}".strip() for f in facts if f["fits"] != f["said"]]
    lines += ["", f"fit/no-fit facts right: {len(facts) - len(wrong)} of {len(facts)}"
              + (f"; wrong: {', '.join(wrong)}" if wrong else "")]
    return "\n".join(lines)


@cache
def measure(path: Path = CASES) -> tuple[dict, ...]:
    """One result per logged number, estimated once per file and run (the table, the error bands and the README
    summary read them)."""
    out = []
    for case in load_cases(path):
        for m in case.get("measured", []):
            spec = parse_spec(_merge(case["spec"], m))
            est = estimate(spec, gpu_architecture=case.get("gpu"))   # the case's GPU architecture, where named
            gpus = est.layout.total_gpus
            guide = 8 * est.parameters / gpus
            out.append(dict(id=case["id"], variant=m["variant"], quantity=m["quantity"], setup=summary(spec, est),
                            framework=runtime_of(spec), gpu=case.get("gpu"),
                            measured=m["gib"] * GiB, rackfit=comparable(m["quantity"], spec, est, case.get("gpu")),
                            guide=guide, phase=est.peak_phase,
                            approximated=m.get("approximated") or case.get("approximated")))
    return tuple(out)


def err(pred: float, meas: float) -> float:
    return (pred - meas) / meas * 100


def table(results: Sequence[dict]) -> str:
    lines = ["| row | setup (rackfit spec) | logged as | measured GiB | rackfit GiB | error | guide rule GiB | error |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        row = f"{r['id']} {r['variant']}".strip()
        lines.append(f"| {row} | {r['setup']} | {r['quantity']} | {r['measured'] / GiB:.2f} | "
                     f"{r['rackfit'] / GiB:.2f} | {err(r['rackfit'], r['measured']):+.1f}% | "
                     f"{r['guide'] / GiB:.1f} | {err(r['guide'], r['measured']):+.0f}% |")
    errors = [err(r["rackfit"], r["measured"]) for r in results]
    guide = [err(r["guide"], r["measured"]) for r in results]
    lines += ["", f"rackfit: {len(errors)} numbers, median |error| {statistics.median(map(abs, errors)):.1f}%, "
              f"worst unsafe error (memory underestimated) {min(errors):+.1f}%, "
              f"worst overestimate {max(errors):+.1f}%, "
              f"within +-10%: {sum(abs(x) <= 10 for x in errors)}/{len(errors)}. "
              f"Guide rule: median |error| {statistics.median(map(abs, guide)):.0f}%, "
              f"worst underestimate {min(guide):+.0f}%."]
    return "\n".join(lines)


IN_SAMPLE = ("Constants set from these rows: none. Mechanisms added after a row was more than 15% off, their "
             "amounts from the runtimes' source: fused RMSNorm under fsdp (T3 no AC), ZeRO-3 weights kept by "
             "autograd without checkpointing (T5 no AC), the step's temporaries in new segments without "
             "expandable segments (T6 nvidia-smi), torchtitan's compiled loss (T10, +40% before), DTensor's "
             "loss-parallel buffers and the final norm's output (T12, -27% before), FSDP2 keeping a pipeline "
             "stage's layers gathered and gradients unsharded (T13, -54% before), pipeline end stages holding a "
             "vocabulary matrix and Megatron's interleaved schedule (T14, -19% / -42% before), the foreach AdamW "
             "temporary as adamwImplementation says (T15 one GPU, -20% before), FSDP1's root unit under LoRA "
             "(T16/T17, -8% to -20% before), transformers' shifted fp32 logits copy before 4.49 (T16/T17 under "
             "FSDP1, -10% to -16% before), FSDP1's frozen LoRA/QLoRA units keeping each later layer's input gradient "
             "under reentrant checkpointing (T17 Llama 2 70B on FSDP1, -19% before), the norm outputs and SwiGLU "
             "product that Inductor's partitioner may not "
             "recompute (T18 compiled, -16% / -20% before), ZeRO-3's reduce bucket kept from its start as "
             "reduceBucketSize says, with train.py's last logits in its steady reading, and ZeRO run on one GPU "
             "as DeepSpeed runs it (T7 steady, -27% before), FSDP's gathered parameters stranding no allocator slack "
             "(T9, +33% before). torchtitan's ChunkedCELoss (lossChunkBackward) and compiled per-op SAC "
             "not keeping the down projection's output (T3 selective, +14% before). Fit/no-fit facts: HF "
             "Trainer's torch AdamW stepping on ZeRO's flat fp32 partition (T27 ZeRO-2, said fits before), "
             "Megatron's unfused attention keeping 5 bytes a score and --fp16's 16-bit gradient buffer (T25, "
             "said fits before); Hugging Face eager attention's 8 bytes a score (T28, still wrong: 26.6 -> 28.8 GiB "
             "on 31.75); NCCL per communicator of a 2-D mesh and query/key norms (T40 exp. 15, said fits before). "
             "Later: a frozen projection without an adapter saving no input (T80 A6000, +19% before), "
             "FP16_Optimizer under DeepSpeed without ZeRO (T73 steady, +27% before), peft's fp32 residual on an "
             "8-bit base (T72, -27% before), gradient blocks cached by another stream not counted in max_allocated "
             "(T15 b4, +19% before), accelerate's FSDP2 LoRA holding torchtune's FSDP2 groups and copy-in pool "
             "(T340, -28.2% before). "
             "Allocator slack shares: the H200 rows' (docs/accuracy.md).")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--cases"]:  # rows of your own cluster: rackfit observed -o jsonl > FILE
        argv = argv[1:]
    path = Path(argv[0]) if argv else CASES
    results, facts = measure(path), fit_facts(path)
    if not results and not facts:
        print(f"no training rows in {path}")
        return 0
    if results:
        print(table(results))
    if facts:
        print()
        print(facts_table(facts))
    if not argv:
        print(IN_SAMPLE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
