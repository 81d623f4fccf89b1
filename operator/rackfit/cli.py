"""`rackfit estimate | plan | catalog | operator`: the command line. `main(argv) -> int` alone prints;
errors go to stderr with exit code 2. `-o json|yaml` prints the same objects the operator writes to
status (camelCase keys, byte and parameter counts as integers); the table output uses binary units
(GiB), and the vendor's decimal GB only where it quotes a GPU's nominal size, labelled as such.

A flag either applies or is refused: training flags on an inference workload (and the reverse) are
errors, and a flag given with -f overrides the file's value, with a note on stderr."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys
from pathlib import Path
from typing import Any, get_args

import yaml

from rackfit.api.status import estimate_view, plan_view
from rackfit.catalog import Catalog, load_catalog
from rackfit.catalog.guide import check_guide
from rackfit.errors import InvalidWorkload, RackfitError
from rackfit.estimator import Estimate, Layout, estimate_arch
from rackfit.models import ModelArch, resolve
from rackfit.operator.config import environment_help, setting_help
from rackfit.planner import Plan, plan, usable_bytes
from rackfit.planner.search import device
from rackfit.spec import Checkpointing, Engine, Framework, KVPrecision, LLMWorkloadSpec, Method, Precision, parse_spec
from rackfit.units import count, fmt_bytes, fmt_count

# The module `rackfit operator` imports and runs (`run(...)`: registers the kopf handlers, runs kopf).
OPERATOR_MODULE = "rackfit.operator.handlers"
# Top-level modules of the `operator` extra: an ImportError naming one of them means the extra is missing.
OPERATOR_EXTRA = ("kopf", "kubernetes", "prometheus_client", "cryptography")

EXIT_BROKEN_PIPE = 128 + 13  # as a shell reports a process that SIGPIPE ended
BAR_WIDTH = 40
_PARTS = [("weights", "weightsBytes", "W"), ("KV cache", "kvCacheBytes", "K"), ("activations", "activationsBytes", "A"),
          ("gradients", "gradientsBytes", "G"), ("optimizer", "optimizerStatesBytes", "O"),
          ("CUDA graphs", "cudaGraphBytes", "C"), ("non-torch", "nonTorchBytes", "N"),
          ("overhead", "overheadBytes", ".")]

# Flags that set a spec field: (dest, flag, {workload: path in the spec}). A flag with no path for the
# workload does not apply to it, and is an error rather than ignored.
_SPEC_FLAGS: list[tuple[str, str, dict[str, tuple[str, ...]]]] = [
    ("precision", "--precision", {"inference": ("precision",), "training": ("precision",)}),
    ("context", "--context", {"inference": ("inference", "contextLength"),
                              "training": ("training", "sequenceLength")}),
    ("concurrency", "--concurrency", {"inference": ("inference", "concurrency")}),
    ("kv_precision", "--kv-precision", {"inference": ("inference", "kvCachePrecision")}),
    ("engine", "--engine", {"inference": ("inference", "engine")}),
    ("gpu_memory_utilization", "--gpu-memory-utilization", {"inference": ("inference", "gpuMemoryUtilization")}),
    ("engine_version", "--engine-version", {"inference": ("inference", "engineVersion")}),
    ("framework", "--framework", {"training": ("training", "framework")}),
    ("method", "--method", {"training": ("training", "method")}),
    ("batch", "--batch", {"training": ("training", "microBatchSize")}),
    ("checkpointing", "--checkpointing", {"training": ("training", "activationCheckpointing")}),
]


def _note(msg: str) -> None:
    print(f"rackfit: note: {msg}", file=sys.stderr)


# --- input ---------------------------------------------------------------------------------------

def _read_file(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d]
    except OSError as e:
        raise RackfitError(f"cannot read {name}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise RackfitError(f"{name} is not valid YAML or JSON: {e}") from None
    workloads = [d for d in docs if isinstance(d, dict) and d.get("kind", "LLMWorkload") == "LLMWorkload"]
    if len(workloads) != 1:
        raise RackfitError(f"{name} must hold exactly one LLMWorkload (or a bare spec); found {len(workloads)}")
    return workloads[0]


def _source(args: argparse.Namespace) -> str:
    return "stdin" if args.file == "-" else args.file


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> Any:
    """spec[path] = value (camelCase key); returns the value it replaces, None if there was none."""
    *sections, key = path
    node = spec
    for section in sections:
        if node.get(section) is None:
            node[section] = {}
        node = node[section]
        if not isinstance(node, dict):
            return None  # malformed: parse_spec names it
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
    old = node.pop(snake, None) if snake != key else None
    old = node.get(key, old)
    node[key] = value
    return old


def _spec_doc(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """The document to parse, with the flags applied, and the directory relative paths in it start from."""
    if args.file:
        if args.model:
            raise RackfitError(f"--model: {_source(args)} already names the model; give -f or --model, not both")
        doc = _read_file(args.file)
        base = Path(args.file).parent if args.file != "-" else None
    elif args.model:
        doc = {"model": {"preset": args.model}, "workload": args.workload or "inference"}
        base = None
    else:
        raise RackfitError("give -f FILE (an LLMWorkload manifest or spec) or --model PRESET")
    spec = doc.get("spec") if ("kind" in doc or "apiVersion" in doc) else doc
    if not isinstance(spec, dict):
        return doc, base  # parse_spec says what is wrong
    workload = spec.get("workload")
    if args.file and args.workload and args.workload != workload:
        raise RackfitError(f"--workload {args.workload} contradicts workload: {workload} in {_source(args)}; "
                           "change the workload in the file")
    if workload == "training" and not args.file:
        spec["training"] = {}
    for dest, flag, paths in _SPEC_FLAGS:
        value = getattr(args, dest)
        if value is None or workload not in ("inference", "training"):
            continue
        if workload not in paths:
            (other,) = paths
            raise RackfitError(f"{flag} applies to {other} workloads only; this one is {workload}")
        path = paths[workload]
        old = _set(spec, path, value)
        if old is not None and old != value:
            _note(f"{flag} {value} overrides spec.{'.'.join(path)}: {old} in {_source(args)}")
    return doc, base


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


def _only_type(args: argparse.Namespace, spec: LLMWorkloadSpec) -> LLMWorkloadSpec:
    """The spec restricted to --instance-type, if given (overriding the file's placement.instanceTypes)."""
    if not args.instance_type:
        return spec
    allowed = spec.placement.instance_types
    if allowed is not None and allowed != [args.instance_type]:
        _note(f"--instance-type {args.instance_type} overrides spec.placement.instanceTypes: "
              f"{', '.join(allowed)} in {_source(args)}")
    return spec.model_copy(update={"placement": spec.placement.model_copy(
        update={"instance_types": [args.instance_type]})})


def _fixed_layout(args: argparse.Namespace, arch: ModelArch, workload: str) -> Layout | None:
    if args.gpus is None:
        return None
    if args.gpus < 1:
        raise RackfitError("--gpus must be at least 1")
    if workload == "training":
        # every training framework's own default: FSDP and ZeRO shard over the data ranks, DDP and Megatron replicate
        return Layout(data=args.gpus)
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
    params = fmt_count(est.parameters)
    if est.active_parameters != est.parameters:  # MoE: what one token touches
        params += f" ({fmt_count(est.active_parameters)} active)"
    lines = [title,
             f"  parameters {params}   "
             f"layout: tensor {lay.tensor} x pipeline {lay.pipeline} x data {lay.data}"
             + (f", expert {lay.expert}" if lay.expert > 1 else "") + f"   peak: {est.peak_phase}"]
    for name, key, ch in _PARTS:
        if view["breakdown"][key]:
            lines.append(f"  {ch} {name:<12} {fmt_bytes(view['breakdown'][key]):>10}")
    cap = f" of {fmt_bytes(capacity)} usable" if capacity else ""
    lines.append(f"    {'total/GPU':<12} {fmt_bytes(est.total_bytes):>10}{cap}")
    if est.engine:
        e = est.engine
        lines.append(f"  {e.engine}: memory fraction {e.gpu_memory_utilization:g}, {e.max_num_batched_tokens} batched "
                     f"tokens, {e.max_num_seqs} sequences, max_model_len {e.max_model_len}")
    if est.kv_cache_tokens is not None:
        lines.append(f"  KV cache: {est.kv_cache_tokens:,} tokens per replica; maximum concurrency for "
                     f"{est.engine.max_model_len} tokens per request: {est.max_concurrency:g}x")
    lines.append(f"  {_bar(view, capacity)}")
    if est.error_band:
        lines.append(f"  measured error of this regime: {est.error_band}")
    lines += [f"  note: {n}" for n in est.notes]
    return "\n".join(lines)


def _nodes_text(nodes: int, per_node: int, total: int) -> str:
    """'1 node x 4 GPUs', '2 nodes x 4 GPUs = 8 GPUs'."""
    text = f"{count(nodes, 'node')} x {count(per_node, 'GPU')}"
    return text if nodes == 1 and per_node == total else f"{text} = {count(total, 'GPU')}"


def _plan_text(p: Plan) -> str:
    if p.chosen is None:
        head = "Does not fit any allowed instance type."
        if p.unplaced:
            head = "Fits, but no NVLink domain has enough free GPUs now."
        return "\n".join([head] + [f"  {r.instance_type}: {r.reason}" for r in p.rejected + p.unplaced])
    c = p.chosen.placement
    lines = [_estimate_text(p.chosen.estimate, (
        f"{c.instance_type}: {_nodes_text(c.nodes, c.gpus_per_node, c.total_gpus)}"
        + (f", ${c.price_per_hour:,.2f}/h" if c.price_per_hour is not None else "")
        + (f", domain {c.nvlink_domain}" if c.nvlink_domain else "")), c.gpu_memory_bytes)]
    if p.alternatives:
        lines.append("alternatives:")
        for o in p.alternatives:
            a = o.placement
            lines.append(f"  {a.instance_type:<18} {count(a.total_gpus, 'GPU'):>9} on {count(a.nodes, 'node'):<9} "
                         f"tensor {a.tensor} x pipeline {a.pipeline}  {fmt_bytes(o.estimate.total_bytes)}/GPU of "
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
    if args.catalog and not args.instance_type:
        raise RackfitError("--catalog only matters with --instance-type: without one, estimate reads no catalog")
    doc, base = _spec_doc(args)
    spec = parse_spec(doc)
    arch = resolve(spec.model, _hf_config(doc, base))
    layout = _fixed_layout(args, arch, spec.workload)
    if layout is not None and spec.parallelism is not None and layout != spec.parallelism:
        _note(f"--gpus {args.gpus} overrides spec.parallelism in {_source(args)}")
    layout = layout or spec.parallelism
    capacity = None
    if args.instance_type:
        spec = _only_type(args, spec)
        catalog = _catalog(args)
        if layout is None:
            p = plan(spec, catalog, arch=arch)
            if p.chosen is None:
                reason = "; ".join(r.reason for r in p.rejected)
                print(f"rackfit: does not fit {args.instance_type}: {reason}", file=sys.stderr)
                return 1
            c = p.chosen.placement
            _note(f"no --gpus: estimating the smallest layout that fits {c.instance_type}, "
                  f"{_nodes_text(c.nodes, c.gpus_per_node, c.total_gpus)}; --gpus N fixes another")
            est, capacity = p.chosen.estimate, c.gpu_memory_bytes
        else:
            t = catalog.get(args.instance_type)
            est = estimate_arch(spec, arch, layout, device(t, spec))
            capacity = est.engine_budget_bytes or usable_bytes(t, spec)
    else:
        est = estimate_arch(spec, arch, layout or Layout())
    title = f"{arch.name}: {spec.workload} on {count(est.layout.total_gpus, 'GPU')}"
    if args.instance_type:
        title += f" of {args.instance_type}"
    _emit(args, {"estimate": estimate_view(est)}, _estimate_text(est, title, capacity))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    doc, base = _spec_doc(args)
    spec = _only_type(args, parse_spec(doc))
    p = plan(spec, _catalog(args), hf_config=_hf_config(doc, base))
    _emit(args, plan_view(p), _plan_text(p))
    return 0 if p.chosen else 1


def cmd_catalog(args: argparse.Namespace) -> int:
    catalog = _catalog(args)
    if args.check_guide:
        rows = check_guide(catalog)
        text = [f"{'instance type':<18} {'GPUs':>4}  {'vendor memory':>13}  {'FP8 inference (guide)':>23}  "
                f"{'BF16 training (guide)':>23}"]
        for r in rows:
            text.append(f"{r.instance_type:<18} {r.gpus:>4}  {r.memory_bytes / 1e12:>10.2f} TB  "
                        f"{fmt_count(r.inference_params):>11} ({fmt_count(r.guide_inference_params):>8})  "
                        f"{fmt_count(r.training_params):>11} ({fmt_count(r.guide_training_params):>8})"
                        + ("  <- disagrees" if r.disagreements else ""))
        text.append("vendor memory: the GPUs' nominal decimal TB, as the guide counts; inference and training: "
                    "parameters that fit")
        for r in rows:
            text += [f"  {r.instance_type} ({count(r.gpus, 'GPU')}): {d}" for d in r.disagreements]
        _emit(args, {"rows": [r.model_dump(by_alias=True) for r in rows]}, "\n".join(text))
        return 0
    data = {name: t.model_dump(by_alias=True, exclude_none=True) for name, t in catalog.instance_types.items()}
    text = [f"{'instance type':<18} {'GPU':<24} {'memory/GPU':>10} {'vendor size':>11} {'GPUs/node':>9} "
            f"{'NVLink domain':>13}  formats"]
    for t in catalog.instance_types.values():
        formats = ",".join(f for f in ("fp8", "mxfp4", "nvfp4") if f in t.gpu.formats) or "-"
        text.append(f"{t.name:<18} {t.gpu.model:<24} {fmt_bytes(t.gpu.memory_bytes):>10} "
                    f"{t.gpu.memory_gb:>8g} GB {t.gpus_per_node:>9} {t.nvlink_domain_gpus:>13}  {formats}")
    _emit(args, {"instanceTypes": data}, "\n".join(text))
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    try:
        handlers = importlib.import_module(OPERATOR_MODULE)
    except ImportError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in OPERATOR_EXTRA:
            raise
        raise RackfitError(f"`rackfit operator` needs the operator extra ({missing} is not installed): "
                           "pip install 'rackfit[operator]'") from None

    if args.prometheus_url is not None:
        os.environ["RACKFIT_PROMETHEUS_URL"] = args.prometheus_url
    handlers.run(standalone=args.standalone, peering=args.peering, liveness=args.liveness, verbose=args.verbose)
    return 0


def cmd_observed(args: argparse.Namespace) -> int:
    try:
        from rackfit.operator import kube
    except ImportError as e:
        raise RackfitError("`rackfit observed` reads LLMWorkloads from the cluster: it needs the operator extra "
                           "(pip install 'rackfit[operator]')") from e
    from rackfit.observed.rows import case, row

    def key(o: dict[str, Any]) -> tuple[str, str]:
        m = o.get("metadata") or {}
        return m.get("namespace", ""), m.get("name", "")
    items = sorted((o for o in kube.list_workloads() if not args.namespace or key(o)[0] == args.namespace), key=key)
    if args.output == "jsonl":
        catalog = load_catalog()
        for o in items:
            c = case(o, catalog)
            if c is not None:
                print(json.dumps(c))
        return 0
    rows = [row(o) for o in items]
    if args.output == "json":
        print(json.dumps({"workloads": rows}, indent=2))
        return 0

    def fig(d: dict[str, Any], k: str) -> str:
        v = d.get(k)
        return "-" if v is None else fmt_bytes(v) if k == "gpuMemoryBytes" else f"{v:,}"
    text = [f"{'NAMESPACE':<14} {'NAME':<22} {'COMPARES':<12} {'ESTIMATE':>12} {'NEEDED':>10} {'OBSERVED':>12} "
            f"{'RATIO':>6}  ESTIMATEHOLDS"]
    for r in rows:
        est, obs = r.get("estimate") or {}, r.get("observed") or {}
        k = "gpuMemoryBytes" if r["compare"] == "framebuffer" else "kvCacheTokens"
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else "-"
        text.append(f"{r['namespace']:<14} {r['name']:<22} {r['compare'] or '-':<12} {fig(est, k):>12} "
                    f"{fig(est, 'requiredKVTokens'):>10} {fig(obs, k):>12} {ratio:>6}  "
                    f"{r['estimateHolds']} {r['reason']}")
    print("\n".join(text))
    return 0


def _version() -> str:
    try:
        return importlib.metadata.version("rackfit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        from rackfit import __version__

        return __version__


def _choices(literal: Any) -> str:
    return "{" + ",".join(get_args(literal)) + "}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rackfit", description="GPU memory and placement for LLM workloads.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def output(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table",
                        help="table for people (default), json or yaml as the operator writes status")

    def common(sp: argparse.ArgumentParser, instance_type_help: str, catalog_help: str) -> argparse._ArgumentGroup:
        w = sp.add_argument_group("workload", "-f FILE or --model PRESET; with -f, the flags below override "
                                              "the file's values (noted on stderr)")
        w.add_argument("-f", "--file", help="LLMWorkload manifest or bare spec (YAML/JSON; - for stdin)")
        w.add_argument("--model", metavar="PRESET", help="model preset, e.g. llama-3.1-70b")
        w.add_argument("--workload", choices=["inference", "training"],
                       help="with --model (default inference); with -f, must match the file")
        w.add_argument("--precision", metavar=_choices(Precision), help="weight precision (default bf16)")
        w.add_argument("--context", type=int, metavar="TOKENS",
                       help="inference contextLength or training sequenceLength (default 4096)")
        i = sp.add_argument_group("inference only")
        i.add_argument("--concurrency", type=int, metavar="N", help="sequences resident at once (default 1)")
        i.add_argument("--kv-precision", metavar=_choices(KVPrecision), help="KV cache precision (default bf16)")
        i.add_argument("--engine", metavar=_choices(Engine), help="serving engine (default vllm)")
        i.add_argument("--gpu-memory-utilization", type=float, metavar="F",
                       help="the engine's memory fraction (default: the engine's own)")
        i.add_argument("--engine-version", metavar="X.Y.Z",
                       help="vLLM or SGLang release, for releases that planned memory differently (default: current)")
        t = sp.add_argument_group("training only")
        t.add_argument("--method", metavar=_choices(Method), help="fine-tuning method (default full)")
        t.add_argument("--framework", metavar=_choices(Framework), help="training framework (default transformers)")
        t.add_argument("--batch", type=int, metavar="N", help="micro-batch size (default 1)")
        t.add_argument("--checkpointing", metavar=_choices(Checkpointing),
                       help="activation checkpointing (default none)")
        pl = sp.add_argument_group("placement")
        pl.add_argument("--instance-type", metavar="NAME", help=instance_type_help)
        pl.add_argument("--catalog", metavar="FILE", help=catalog_help)
        output(sp)
        return pl

    e = sub.add_parser("estimate", help="per-GPU memory of a workload",
                       description="Per-GPU memory of a workload. The layout is --gpus N, else the file's "
                                   "spec.parallelism, else one GPU; with --instance-type but no layout, the "
                                   "smallest layout that fits that type (noted on stderr).")
    placement = common(e, "measure against this type's usable memory (see `rackfit catalog`)",
                       "with --instance-type: YAML file merged over the built-in catalog")
    placement.add_argument("--gpus", type=int, metavar="N", help="fixed layout of N GPUs: training, data parallel "
                                   "(FSDP/ZeRO shards); inference, tensor parallel when the heads divide by N, else "
                                   "pipeline (1: none)")
    e.set_defaults(func=cmd_estimate)
    pl = sub.add_parser("plan", help="instance type, nodes and parallel layout",
                        description="Pick the instance type, node count and parallel layout that fit a workload. "
                                    "Exit code 1 when nothing fits.")
    common(pl, "only this instance type (overrides spec.placement.instanceTypes)",
           "YAML file merged over the built-in catalog")
    pl.set_defaults(func=cmd_plan)
    c = sub.add_parser("catalog", help="the GPU instance catalog",
                       description="List the GPU instance catalog; memory/GPU is what the GPU reports (GiB), "
                                   "vendor size its nominal decimal GB.")
    c.add_argument("--catalog", metavar="FILE", help="YAML file merged over the built-in catalog")
    c.add_argument("--check-guide", action="store_true", help="recompute the guide's table with its own rules")
    output(c)
    c.set_defaults(func=cmd_catalog)
    ob = sub.add_parser("observed", help="estimate beside what each workload really uses (from the cluster)",
                        description="Each LLMWorkload's estimate beside status.observed and EstimateHolds "
                                    "(docs/observed.md). -o jsonl writes calibration rows in the format of "
                                    "bench/cases/ (python bench/public_serving.py --cases FILE).")
    ob.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    ob.add_argument("-o", "--output", choices=["table", "json", "jsonl"], default="table")
    ob.set_defaults(func=cmd_observed)
    op = sub.add_parser("operator", help="run the LLMWorkload operator (needs the operator extra)",
                        description="Run the LLMWorkload operator (kopf, cluster-wide). Needs the operator "
                                    "extra: pip install 'rackfit[operator]'.",
                        epilog=environment_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    peering = op.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="no peering: for a single replica")
    peering.add_argument("--peering", metavar="NAME",
                         help="kopf peering name shared by replicas (default: kopf's, standalone if absent)")
    op.add_argument("--liveness", metavar="URL", help="health endpoint, e.g. http://0.0.0.0:8080/healthz")
    op.add_argument("-v", "--verbose", action="store_true", help="kopf's verbose logging")
    op.add_argument("--prometheus-url", metavar="URL", help=setting_help("prometheus_url"))
    op.set_defaults(func=cmd_operator)
    return p


def _silence_stdout() -> None:
    """After a BrokenPipeError: point stdout at /dev/null so the interpreter's last flush cannot fail
    again (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a file descriptor (tests' captured stdout)
        pass


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            args = parser().parse_args(argv)
        finally:
            sys.stdout.flush()  # --help, --version
        try:
            code = args.func(args)
        except RackfitError as e:
            print(f"rackfit: error: {e}", file=sys.stderr)
            code = 2
        sys.stdout.flush()  # a reader that went away shows up here, not at interpreter exit
        return code
    except BrokenPipeError:  # `rackfit ... | head`: stop quietly, as a process SIGPIPE ended would
        _silence_stdout()
        return EXIT_BROKEN_PIPE
