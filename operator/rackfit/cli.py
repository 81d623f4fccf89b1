"""`rackfit estimate | plan | catalog`: the command line. `main(argv) -> int` alone prints; errors go
to stderr with exit code 2. `-o json|yaml` prints the same objects the operator writes to status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from rackfit.api.status import estimate_view, plan_view
from rackfit.api.v1alpha1 import parse_spec
from rackfit.catalog import Catalog, load_catalog
from rackfit.catalog.guide import check_guide
from rackfit.errors import InvalidWorkload, RackfitError
from rackfit.estimator import Estimate, Layout, estimate
from rackfit.models import resolve
from rackfit.planner import Plan, plan, usable_bytes
from rackfit.units import fmt_bytes, fmt_count

BAR_WIDTH = 40
_PARTS = [("weights", "weightsBytes", "W"), ("KV cache", "kvCacheBytes", "K"), ("activations", "activationsBytes", "A"),
          ("gradients", "gradientsBytes", "G"), ("optimizer", "optimizerStatesBytes", "O"), ("overhead", "overheadBytes", ".")]


# --- input ---------------------------------------------------------------------------------------

def _spec_doc(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    if args.file:
        path = Path(args.file)
        try:
            text = sys.stdin.read() if args.file == "-" else path.read_text()
            docs = [d for d in yaml.safe_load_all(text) if d]
        except OSError as e:
            raise RackfitError(f"cannot read {args.file}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise RackfitError(f"{args.file} is not valid YAML or JSON: {e}") from None
        workloads = [d for d in docs if isinstance(d, dict) and d.get("kind", "LLMWorkload") == "LLMWorkload"]
        if len(workloads) != 1:
            raise RackfitError(f"{args.file} must hold exactly one LLMWorkload (or a bare spec); found {len(workloads)}")
        doc = workloads[0]
        return doc, (path.parent if args.file != "-" else None)
    if not args.model:
        raise RackfitError("give -f FILE (an LLMWorkload manifest or spec) or --model PRESET")
    doc: dict[str, Any] = {"model": {"preset": args.model}, "workload": args.workload,
                           "precision": args.precision}
    if args.workload == "inference":
        doc["inference"] = {k: v for k, v in (("contextLength", args.context), ("concurrency", args.concurrency),
                                              ("kvCachePrecision", args.kv_precision)) if v is not None}
    else:
        doc["training"] = {k: v for k, v in (("method", args.method), ("sequenceLength", args.context),
                                             ("microBatchSize", args.batch),
                                             ("activationCheckpointing", args.checkpointing)) if v is not None}
    return doc, None


def _hf_config(spec_doc: dict[str, Any], base: Path | None) -> dict[str, Any] | None:
    spec = spec_doc.get("spec", spec_doc)
    ref = (spec.get("model") or {}).get("huggingFaceConfig") if isinstance(spec, dict) else None
    if not ref:
        return None
    path = Path(ref) if Path(ref).is_absolute() or base is None else base / ref
    if not path.exists() and Path(ref).exists():
        path = Path(ref)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvalidWorkload([("spec.model.huggingFaceConfig", f"cannot read {path}: {e}")]) from None


def _catalog(args: argparse.Namespace) -> Catalog:
    if not getattr(args, "catalog", None):
        return load_catalog()
    try:
        return load_catalog(Path(args.catalog).read_text())
    except OSError as e:
        raise RackfitError(f"cannot read catalog {args.catalog}: {e.strerror}") from None


def _fixed_layout(args: argparse.Namespace, spec, arch) -> Layout | None:
    if args.gpus is None:
        return None
    if args.gpus < 1:
        raise RackfitError("--gpus must be at least 1")
    if arch.num_attention_heads % args.gpus == 0:
        return Layout(tensor=args.gpus)
    return Layout(pipeline=args.gpus)


# --- output --------------------------------------------------------------------------------------

def _bar(view: dict[str, Any], capacity: int | None) -> str:
    scale = max(capacity or 0, view["totalBytes"])
    cells = ""
    for _, key, ch in _PARTS:
        cells += ch * round(view["breakdown"][key] / scale * BAR_WIDTH)
    cells = cells[:BAR_WIDTH].ljust(round(BAR_WIDTH * view["totalBytes"] / scale))
    return f"[{cells.ljust(BAR_WIDTH)}]"


def _estimate_text(est: Estimate, title: str, capacity: int | None = None) -> str:
    view = estimate_view(est)
    lay = est.layout
    lines = [title,
             f"  parameters {fmt_count(est.parameters)} ({fmt_count(est.active_parameters)} active)   "
             f"layout: tensor {lay.tensor} x pipeline {lay.pipeline} x data {lay.data}"
             + (f", expert {lay.expert}" if lay.expert > 1 else "") + f"   peak: {est.peak_phase}"]
    for name, key, ch in _PARTS:
        if view["breakdown"][key]:
            lines.append(f"  {ch} {name:<12} {fmt_bytes(view['breakdown'][key]):>10}")
    cap = f" of {fmt_bytes(capacity)} usable" if capacity else ""
    lines.append(f"    {'total/GPU':<12} {fmt_bytes(est.total_bytes):>10}{cap}")
    lines.append(f"  {_bar(view, capacity)}")
    lines += [f"  note: {n}" for n in est.notes]
    return "\n".join(lines)


def _plan_text(p: Plan) -> str:
    if p.chosen is None:
        head = "Does not fit any allowed instance type."
        if p.unplaced:
            head = "Fits, but no NVLink domain has enough free GPUs now."
        return "\n".join([head] + [f"  {r.instance_type}: {r.reason}" for r in p.rejected + p.unplaced])
    c = p.chosen.placement
    lines = [_estimate_text(p.chosen.estimate, (
        f"{c.instance_type}: {c.nodes} node(s) x {c.gpus_per_node} GPUs = {c.total_gpus} GPUs"
        + (f", ${c.price_per_hour:,.2f}/h" if c.price_per_hour is not None else "")
        + (f", domain {c.nvlink_domain}" if c.nvlink_domain else "")), c.gpu_memory_bytes)]
    if p.alternatives:
        lines.append("alternatives:")
        for o in p.alternatives:
            a = o.placement
            lines.append(f"  {a.instance_type:<18} {a.total_gpus:>4} GPUs on {a.nodes:>3} node(s)  tensor {a.tensor} "
                         f"x pipeline {a.pipeline}  {fmt_bytes(o.estimate.total_bytes)}/GPU of "
                         f"{fmt_bytes(a.gpu_memory_bytes)}")
    if p.rejected:
        lines.append("does not fit:")
        lines += [f"  {r.instance_type:<18} {r.reason}" for r in p.rejected]
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.output == "json":
        print(json.dumps(data, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(data, sort_keys=False), end="")
    else:
        print(text)


# --- commands ------------------------------------------------------------------------------------

def cmd_estimate(args: argparse.Namespace) -> int:
    doc, base = _spec_doc(args)
    spec = parse_spec(doc)
    hf = _hf_config(doc, base)
    arch = resolve(spec.model, hf)
    layout = _fixed_layout(args, spec, arch)
    catalog = _catalog(args)
    if args.instance_type and layout is None:
        spec = spec.model_copy(update={"placement": spec.placement.model_copy(
            update={"instance_types": [args.instance_type]})})
        return _print_plan(args, plan(spec, catalog, arch=arch), estimate_only=True)
    est = estimate(spec, layout, hf)
    capacity = None
    if args.instance_type:
        capacity = usable_bytes(catalog.get(args.instance_type), spec)
    _emit(args, {"estimate": estimate_view(est)}, _estimate_text(est, f"{arch.name}: {spec.workload}", capacity))
    return 0


def _print_plan(args: argparse.Namespace, p: Plan, estimate_only: bool = False) -> int:
    view = plan_view(p)
    if estimate_only:
        view = {k: view[k] for k in ("estimate", "placement") if k in view}
    _emit(args, view, _plan_text(p))
    return 0 if p.chosen else 1


def cmd_plan(args: argparse.Namespace) -> int:
    doc, base = _spec_doc(args)
    spec = parse_spec(doc)
    if args.instance_type:
        spec = spec.model_copy(update={"placement": spec.placement.model_copy(
            update={"instance_types": [args.instance_type]})})
    return _print_plan(args, plan(spec, _catalog(args), hf_config=_hf_config(doc, base)))


def cmd_catalog(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if args.check_guide:
        rows = check_guide(catalog)
        data = [r.model_dump() for r in rows]
        text = ["instance type       GPUs   memory   FP8 inference (guide)   BF16 training (guide)"]
        for r in rows:
            text.append(f"{r.instance_type:<18} {r.gpus:>4} {r.memory_bytes / 1e12:>6.2f} TB "
                        f"{r.inference_params / 1e9:>9,.0f}B ({r.guide_inference_params / 1e9:>7,.0f}B) "
                        f"{r.training_params / 1e9:>9,.0f}B ({r.guide_training_params / 1e9:>6,.0f}B)"
                        + ("  <- disagrees" if r.disagreements else ""))
        for r in rows:
            text += [f"  {r.instance_type} ({r.gpus} GPUs): {d}" for d in r.disagreements]
        _emit(args, {"rows": data}, "\n".join(text))
        return 0
    data = {name: t.model_dump(by_alias=True, exclude_none=True) for name, t in catalog.instance_types.items()}
    text = [f"{'instance type':<18} {'GPU':<24} {'memory':>9} {'GPUs/node':>9} {'NVLink domain':>13}  formats"]
    for t in catalog.instance_types.values():
        text.append(f"{t.name:<18} {t.gpu.model:<24} {t.gpu.memory_gb:>6g} GB {t.gpus_per_node:>9} "
                    f"{t.nvlink_domain_gpus:>13}  {','.join(f for f in ('fp8', 'mxfp4', 'nvfp4') if f in t.gpu.formats) or '-'}")
    _emit(args, {"instanceTypes": data}, "\n".join(text))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    import kopf  # noqa: PLC0415  (the operator extra; the calculator CLI runs without it)

    import rackfit.operator  # noqa: F401,PLC0415  (registers the handlers)

    kopf.configure(verbose=args.verbose)
    # cluster-wide always: the GPU inventory comes from Nodes and the Pods of every namespace
    kopf.run(clusterwide=True, standalone=args.standalone, peering_name=args.peering,
             liveness_endpoint=args.liveness)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rackfit", description="GPU memory and placement for LLM workloads")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-f", "--file", help="LLMWorkload manifest or bare spec (YAML/JSON; - for stdin)")
        sp.add_argument("--model", help="preset name, e.g. llama-3.1-70b (instead of -f)")
        sp.add_argument("--workload", choices=["inference", "training"], default="inference")
        sp.add_argument("--precision", default="bf16", help="fp32 bf16 fp16 fp8 int8 int4 nf4 mxfp4 nvfp4")
        sp.add_argument("--context", type=int, help="inference contextLength / training sequenceLength")
        sp.add_argument("--concurrency", type=int, help="inference sequences resident at once")
        sp.add_argument("--kv-precision", help="bf16, fp16 or fp8")
        sp.add_argument("--method", help="training method: full, lora, qlora")
        sp.add_argument("--batch", type=int, help="training micro-batch size")
        sp.add_argument("--checkpointing", help="none, selective, full")
        sp.add_argument("--instance-type", help="only this instance type")
        sp.add_argument("--catalog", help="YAML file merged over the built-in catalog")
        sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")

    e = sub.add_parser("estimate", help="per-GPU memory of a workload")
    common(e)
    e.add_argument("--gpus", type=int, help="fixed layout of N GPUs (1: no parallelism)")
    e.set_defaults(func=cmd_estimate)
    pl = sub.add_parser("plan", help="instance type, nodes and parallel layout")
    common(pl)
    pl.set_defaults(func=cmd_plan)
    c = sub.add_parser("catalog", help="the GPU instance catalog")
    c.add_argument("--catalog", help="YAML file merged over the built-in catalog")
    c.add_argument("--check-guide", action="store_true", help="recompute the guide's table with its own rules")
    c.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    c.set_defaults(func=cmd_catalog)
    op = sub.add_parser("operator", help="run the LLMWorkload operator (needs the operator extra)",
                        description="Environment: RACKFIT_CATALOG, RACKFIT_TOLERATIONS (JSON), "
                                    "RACKFIT_METRICS_PORT (9090; 0 = off), RACKFIT_REPLAN_SECONDS (15).")
    op.add_argument("--standalone", action="store_true", help="no peering: for a single replica")
    op.add_argument("--peering", help="kopf peering name shared by replicas (default: kopf's, standalone if absent)")
    op.add_argument("--liveness", help="health endpoint, e.g. http://0.0.0.0:8080/healthz")
    op.add_argument("-v", "--verbose", action="store_true")
    op.set_defaults(func=cmd_operator)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except RackfitError as e:
        print(f"rackfit: error: {e}", file=sys.stderr)
        return 2
