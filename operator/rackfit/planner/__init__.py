"""The placement planner: `plan(spec, catalog, inventory)` picks instance type, node count and
parallel layout, and with a live inventory one NVLink domain with enough free GPUs.

Pure: the operator passes the inventory it read from Node objects; the CLI passes none.
"""

from __future__ import annotations

from typing import Any

from rackfit.catalog import Catalog, InstanceType
from rackfit.errors import InvalidWorkload
from rackfit.estimator import Estimate, Layout, bf16_cast, estimate_arch, fp8_unsupported, pre_ampere_refusal
from rackfit.models import ModelArch, resolve
from rackfit.names import INSTANCE_TYPE_LABEL
from rackfit.planner.inventory import Inventory, InventoryView
from rackfit.planner.result import Option, Placement, Plan, Rejection
from rackfit.planner.search import DEFAULT_MAX_NODES, candidates, device, fits, layout_problems, smallest_need
from rackfit.spec import LLMWorkloadSpec
from rackfit.units import count, fmt_bytes

__all__ = ["plan", "place", "Plan", "Option", "Placement", "Rejection", "Inventory"]

MAX_ALTERNATIVES = 3


def usable_bytes(t: InstanceType, spec: LLMWorkloadSpec) -> int:
    mem = t.gpu.memory_bytes + (t.gpu.host_memory_bytes if spec.placement.use_host_memory else 0)
    return int(mem * (1 - spec.placement.headroom))


def allowed_types(spec: LLMWorkloadSpec, catalog: Catalog) -> list[InstanceType]:
    names = spec.placement.instance_types
    if names is None:
        return list(catalog.instance_types.values())
    unknown = [n for n in names if n not in catalog.instance_types]
    if unknown:
        raise InvalidWorkload([("spec.placement.instanceTypes", f"unknown instance type {', '.join(unknown)}; "
                                f"known: {', '.join(catalog.names())}")])
    return [catalog.instance_types[n] for n in names]


def _option(t: InstanceType, est: Estimate, capacity: int) -> Option:
    # a serving engine's budget is its own fraction of the GPU, whatever the headroom
    usable = est.engine_budget_bytes or capacity
    return Option(placement=_placement(t, est.layout, usable), estimate=est)


def _shortfall(spec: LLMWorkloadSpec, est: Estimate, capacity: int) -> str:
    """Why `est` does not fit: the engine's KV cache, else bytes against capacity."""
    if est.max_concurrency is not None:
        need = spec.inference.per_replica(est.layout.data)
        if est.refused:  # the engine would not start, whatever its cache holds
            return est.refused
        if not est.kv_cache_tokens:
            b = est.breakdown
            rest = b.weights_bytes + b.activations_bytes + b.cuda_graph_bytes + b.non_torch_bytes
            return (f"weights, activations and buffers take {fmt_bytes(rest)} per GPU, leaving nothing of the "
                    f"{spec.inference.engine} budget of {fmt_bytes(est.engine_budget_bytes)} for the KV cache")
        if est.max_concurrency < 1:  # the engine's own refusal (SGLang: its cap), as the estimate words it, with
            # the largest context that fits (estimator.refusal)
            return next(n for n in est.notes if f"one request of contextLength {spec.inference.context_length} " in n)
        return (f"the {spec.inference.engine} KV cache holds {est.kv_cache_tokens} tokens per replica: "
                f"{est.max_concurrency:g} requests of contextLength {spec.inference.context_length}, "
                f"{need} needed")
    return f"each GPU needs {fmt_bytes(est.total_bytes)} of {fmt_bytes(capacity)} usable"


def _placement(t: InstanceType, layout: Layout, capacity: int) -> Placement:
    n = layout.total_gpus
    nodes = -(-n // t.gpus_per_node)
    price = t.price_per_hour * nodes if t.price_per_hour is not None else None
    return Placement(instance_type=t.name, gpus_per_node=min(n, t.gpus_per_node), nodes=nodes, total_gpus=n,
                     tensor=layout.tensor, pipeline=layout.pipeline, data=layout.data, expert=layout.expert,
                     gpu_memory_bytes=capacity, price_per_hour=price,
                     node_selector={INSTANCE_TYPE_LABEL: t.name})


def _options_for(spec: LLMWorkloadSpec, a: ModelArch, t: InstanceType,
                 weighed: dict[tuple[int, int, int, int, str], int | None]) -> tuple[list[Option], str | None]:
    """Options that fit on this type, or the reason none does. `weighed`: the plan's vLLM weights by layout and GPU
    architecture (search.candidates)."""
    if refused := pre_ampere_refusal(spec, a, t.gpu):
        return [], f"{refused[0]}: {refused[1]}"
    # vLLM's cast of a bf16 model to fp16 below Ampere changes its numerics (fp16's range): taken only on a type the
    # spec names, never picked for it
    cast = bf16_cast(spec, t.gpu)
    if spec.precision not in t.gpu.formats and not (cast and t.name in (spec.placement.instance_types or ())):
        return [], (f"precision {spec.precision} is not supported by {t.gpu.model} ({t.gpu.architecture}); "
                    f"it runs {', '.join(sorted(t.gpu.formats))}"
                    + ("; vLLM would serve the bf16 model as fp16: name the type in placement.instanceTypes to "
                       "allow that" if cast else ""))
    if why := fp8_unsupported(spec, a, t.gpu):
        return [], why
    capacity = usable_bytes(t, spec)
    max_nodes = spec.placement.max_nodes or DEFAULT_MAX_NODES
    max_gpus = max_nodes * t.gpus_per_node
    if spec.parallelism is not None:
        layout = spec.parallelism
        problems = layout_problems(spec, a, t, layout)
        if layout.total_gpus > max_gpus:
            problems.append(f"{layout.total_gpus} GPUs exceed maxNodes {max_nodes} x {t.gpus_per_node}")
        if problems:
            return [], "; ".join(problems)
        est = estimate_arch(spec, a, layout, device(t, spec))
        if not fits(spec, est, capacity):
            return [], f"the fixed layout does not fit {t.gpu.model}: {_shortfall(spec, est, capacity)}"
        return [_option(t, est, capacity)], None
    found = [_option(t, est, capacity) for _, est in candidates(spec, a, t, capacity, max_gpus, weighed)]
    if not found:
        need = smallest_need(spec, a, t, max_gpus)
        if need.refused:  # the engine refuses even the largest layout: its reason says what to change
            return [], need.refused
        lay = need.layout
        return [], (f"needs more than {max_gpus} GPUs of {t.gpu.memory_gb:g} GB "
                    f"(vendor size; maxNodes {max_nodes}): at "
                    f"tensor {lay.tensor} x pipeline {lay.pipeline} {_shortfall(spec, need, capacity)}; "
                    f"tensor parallel is limited to {t.tensor_parallel_limit} per NVLink domain")
    return found, None


# Without prices, lowestCost ranks a job held by one NVLink domain before one that crosses domains over
# the network, then by the GPU memory it reserves (GPUs x memory each) weighted by generation (x0.5 Turing,
# x0.75 Volta, x1 Ampere, x1.25 Ada, x1.5 Hopper, x1.75 Blackwell): a proxy for price that sends a small job to the
# smallest GPU that holds it and keeps the newest, largest GPUs for what needs them (docs/placement.md, "Which GPU").
# Turing's T4 is an inference card (70 W), below the V100 that trained the models of its time.
GENERATION_WEIGHT = {"turing": 0.5, "volta": 0.75, "ampere": 1.0, "ada": 1.25, "hopper": 1.5, "blackwell": 1.75}


def _ranking(spec: LLMWorkloadSpec, catalog: Catalog):
    """The sort key for options of this spec: fewestGPUs, or lowestCost by price, else by the proxy."""
    def key(o: Option) -> tuple:
        p = o.placement
        by_gpus = (p.total_gpus, p.nodes, p.pipeline, -p.tensor, o.estimate.total_bytes / p.gpu_memory_bytes)
        if spec.placement.objective == "fewestGPUs":
            return by_gpus
        t = catalog.get(p.instance_type)
        if p.price_per_hour is not None:  # priced types first, cheapest job first
            return (0, p.price_per_hour, *by_gpus)
        reserved = p.total_gpus * t.gpu.memory_mib * GENERATION_WEIGHT[t.gpu.architecture]
        return (1, p.nodes > t.nodes_per_domain, reserved, *by_gpus)
    return key


def plan(spec: LLMWorkloadSpec, catalog: Catalog, inventory: Inventory | InventoryView | None = None,
         hf_config: dict[str, Any] | None = None, arch: ModelArch | None = None,
         prefer_domain: str | None = None) -> Plan:
    """Every allowed type's best layouts, ranked; with an inventory, only those placeable in the free
    capacity of one NVLink domain are chosen (a workload keeps `prefer_domain` while it still fits)."""
    a = arch or resolve(spec.model, hf_config)
    options: list[Option] = []
    rejected: list[Rejection] = []
    rank = _ranking(spec, catalog)
    weighed: dict[tuple[int, int, int, int, str], int | None] = {}  # the same weights recur on GPUs of a generation
    for t in allowed_types(spec, catalog):
        found, why = _options_for(spec, a, t, weighed)
        if why:
            rejected.append(Rejection(instance_type=t.name, reason=why))
        options.extend(sorted(found, key=rank)[:MAX_ALTERNATIVES])
    options.sort(key=rank)
    # alternatives show other instance types first: "which GPU" is the question they answer
    anywhere = Plan(chosen=options[0] if options else None, alternatives=_alternatives(options),
                    rejected=rejected, options=options)
    return anywhere if inventory is None else place(anywhere, catalog, inventory, prefer_domain)


def place(anywhere: Plan, catalog: Catalog, inventory: Inventory | InventoryView, prefer_domain: str | None = None
          ) -> Plan:
    """`anywhere` (a plan without inventory) narrowed to what one NVLink domain can hold now. No
    estimating: the operator calls this under its ledger's lock, and estimates before taking it."""
    placeable, unplaced = [], []
    for o in anywhere.options:
        placed = _in_domain(o, catalog.get(o.placement.instance_type), inventory, prefer_domain)
        if placed:
            placeable.append(placed)
        elif not any(u.instance_type == o.placement.instance_type for u in unplaced):
            p = o.placement
            unplaced.append(Rejection(instance_type=p.instance_type, reason=(
                f"fits on {count(p.nodes, 'node')} x {count(p.gpus_per_node, 'GPU')}, but no NVLink domain of "
                f"{p.instance_type} has that many free")))
    return Plan(chosen=placeable[0] if placeable else None, alternatives=_alternatives(placeable),
                rejected=anywhere.rejected, unplaced=unplaced if not placeable else [], options=placeable)


def _alternatives(ranked: list[Option]) -> list[Option]:
    """The best option of each other instance type, then further layouts, after the chosen one."""
    seen = {ranked[0].placement.instance_type} if ranked else set()
    first, further = [], []  # split in one pass: `o not in first` compared whole options field by field
    for o in ranked[1:]:
        if o.placement.instance_type not in seen:
            seen.add(o.placement.instance_type)
            first.append(o)
        else:
            further.append(o)
    return (first + further)[:MAX_ALTERNATIVES]


def _in_domain(o: Option, t: InstanceType, inventory: Inventory | InventoryView, prefer: str | None
               ) -> Option | None:
    p = o.placement
    if p.nodes <= t.nodes_per_domain:
        domain = inventory.find_domain(t.name, p.nodes, p.gpus_per_node, prefer)
        if domain is None:
            return None
        # pinned to the domain it holds (a single HGX node too: its GPUs are reserved there, so a pod
        # bound to another node would take GPUs the ledger counts as free)
        selector = {**p.node_selector, domain.label: domain.value}
        return o.model_copy(update={"placement": p.model_copy(
            update={"nvlink_domain": str(domain), "node_selector": selector})})
    # larger than one domain (multi-node HGX): tensor groups stay in each node; count free nodes
    return o if inventory.free_nodes(t.name, p.gpus_per_node) >= p.nodes else None
