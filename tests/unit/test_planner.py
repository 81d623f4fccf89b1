"""Planner: NVLink-domain limits, ranking, rejection reasons, inventory, and the guide's table."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import Layout, estimate_arch, pre_ampere_refusal, vllm_weights, vllm_weights_overflow
from rackfit.models import resolve
from rackfit.planner import Inventory, plan
from rackfit.planner.search import tensor_degrees
from rackfit.spec import ModelSource, parse_spec

CATALOG = load_catalog()


def inference(preset, precision="bf16", context=1024, concurrency=1, **placement):
    return parse_spec(dict(model={"preset": preset}, workload="inference", precision=precision,
                           inference=dict(contextLength=context, concurrency=concurrency), placement=placement))


def zero3_training(preset, gpus, master="fp32", **placement):
    """The guide's training assumption: the whole system's memory shares the model states (ZeRO-3)."""
    return parse_spec(dict(model={"preset": preset}, workload="training", precision="bf16",
                           training=dict(microBatchSize=1, sequenceLength=2048, activationCheckpointing="full",
                                         zeroStage=3, masterWeights=master),
                           parallelism=dict(data=gpus), placement=dict(headroom=0, **placement)))


def test_tensor_parallel_stays_in_the_nvlink_domain():
    assert CATALOG.get("gd-8xh100ib-i128").tensor_parallel_limit == 8
    assert CATALOG.get("gb200-4x").tensor_parallel_limit == 72
    assert CATALOG.get("gd-8xl40s-i128").tensor_parallel_limit == 8  # PCIe: inside the host
    assert CATALOG.get("gd-1xgh200").tensor_parallel_limit == 1
    p = plan(inference("llama-3.1-405b"), CATALOG)
    for o in [p.chosen, *p.alternatives]:
        assert o.placement.tensor <= CATALOG.get(o.placement.instance_type).tensor_parallel_limit


def test_tensor_degrees_divide_heads():
    falcon = resolve(ModelSource(preset="falcon-180b"))  # 232 heads = 8 x 29
    assert tensor_degrees(falcon, 72) == [1, 2, 4, 8]


def test_405b_bf16_needs_several_hgx_nodes_or_one_nvl72_rack():
    spec = inference("llama-3.1-405b", context=16384, concurrency=16, instanceTypes=["gd-8xh100ib-i128"])
    p = plan(spec, CATALOG)
    c = p.chosen.placement
    assert c.nodes >= 2 and c.tensor <= 8 and c.total_gpus == c.nodes * 8
    assert p.chosen.estimate.total_bytes <= c.gpu_memory_bytes


def test_rejection_names_the_limit():
    spec = inference("llama-3.1-405b", instanceTypes=["gd-8xl40s-i128"], maxNodes=1)
    p = plan(spec, CATALOG)
    assert p.chosen is None
    (r,) = p.rejected
    assert "maxNodes 1" in r.reason and "48 GB" in r.reason


def test_precision_the_gpu_cannot_run_is_rejected():
    p = plan(inference("llama-3.1-8b", "nvfp4", instanceTypes=["gd-8xh100ib-i128", "b200-8x"]), CATALOG)
    assert p.chosen.placement.instance_type == "b200-8x"
    assert any(r.instance_type == "gd-8xh100ib-i128" and "nvfp4" in r.reason for r in p.rejected)


def test_fp8_serves_on_ampere_weight_only():
    """vLLM runs fp8 checkpoints on A100 through its FP8 Marlin kernel: planned, not refused."""
    p = plan(inference("llama-3.1-8b", "fp8", instanceTypes=["gd-8xa100-i128"]), CATALOG)
    assert p.chosen.placement.instance_type == "gd-8xa100-i128"
    assert any("weight-only" in n for n in p.chosen.estimate.notes)


@pytest.mark.parametrize("engine", ["tensorrt-llm", "transformers"])
def test_fp8_on_ampere_is_refused_for_runtimes_without_marlin(engine):
    """TensorRT-LLM's and transformers' fp8 kernels need compute capability 8.9: A100 is rejected, Hopper chosen."""
    spec = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "precision": "fp8",
                       "inference": {"engine": engine},
                       "placement": {"instanceTypes": ["gd-8xa100-i128", "gd-8xh100ib-i128"]}})
    p = plan(spec, CATALOG)
    assert p.chosen.placement.instance_type == "gd-8xh100ib-i128"
    (why,) = [r.reason for r in p.rejected if r.instance_type == "gd-8xa100-i128"]
    assert f"{engine} needs compute capability 8.9" in why


def test_unknown_instance_type_is_refused_with_the_field():
    with pytest.raises(InvalidWorkload) as e:
        plan(inference("llama-3.1-8b", instanceTypes=["h100"]), CATALOG)
    assert e.value.errors[0][0] == "spec.placement.instanceTypes" and "gd-8xh100ib-i128" in e.value.errors[0][1]


def test_lowest_cost_uses_prices():
    priced = load_catalog("instanceTypes: {gd-8xh100ib-i128: {pricePerHour: 10}, gd-8xh200ib-i128: {pricePerHour: 50}}")
    spec = inference("llama-3.1-70b", "fp8", instanceTypes=["gd-8xh100ib-i128", "gd-8xh200ib-i128"],
                     objective="lowestCost")
    assert plan(spec, priced).chosen.placement.instance_type == "gd-8xh100ib-i128"
    fewest = inference("llama-3.1-70b", "fp8", instanceTypes=["gd-8xh100ib-i128", "gd-8xh200ib-i128"],
                       objective="fewestGPUs")
    assert plan(fewest, priced).chosen.placement.instance_type == "gd-8xh200ib-i128"  # 1 GPU instead of 2


def _rack(prefix, clique, nodes, free):
    return [(f"{prefix}{i}", {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": clique},
             4, 4 - free) for i in range(nodes)]


def test_inventory_picks_one_domain_with_room():
    inv = Inventory.from_nodes(_rack("a", "u.1", 18, free=0) + _rack("b", "u.2", 18, free=4))
    spec = inference("llama-3.1-405b", context=16384, concurrency=16, instanceTypes=["gb200-4x"])
    p = plan(spec, CATALOG, inv)
    c = p.chosen.placement
    assert c.nvlink_domain == "nvidia.com/gpu.clique=u.2"
    assert c.node_selector["nvidia.com/gpu.clique"] == "u.2"
    full = Inventory.from_nodes(_rack("a", "u.1", 18, free=0))
    p = plan(spec, CATALOG, full)
    assert p.chosen is None and p.fits and "no NVLink domain" in p.unplaced[0].reason


def test_inventory_keeps_the_current_domain_while_it_fits():
    inv = Inventory.from_nodes(_rack("a", "u.1", 18, free=4) + _rack("b", "u.2", 18, free=4))
    spec = inference("llama-3.1-405b", context=16384, concurrency=16, instanceTypes=["gb200-4x"])
    for prefer in ("u.1", "u.2"):
        assert plan(spec, CATALOG, inv, prefer_domain=prefer).chosen.placement.nvlink_domain.endswith(prefer)


def test_infiniband_labels_are_never_a_domain():
    inv = Inventory.from_nodes([("n1", {"node.kubernetes.io/instance-type": "gd-8xh100ib-i128",
                                        "ib.coreweave.cloud/leafgroup": "lg1", "kubernetes.io/hostname": "n1"}, 8, 0)])
    assert inv.nodes["n1"].domain.label == "kubernetes.io/hostname"


# The guide's "examples of models that fit", under its assumptions: FP8 (1 byte/parameter) for
# inference with a short context, and the system's whole memory for training (ZeRO-3), no headroom.
GUIDE_INFERENCE = [
    ("b200-8x", "llama-3.1-405b", "fp8"), ("b200-8x", "nemotron-4-340b", "fp8"),
    ("gd-8xh200ib-i128", "falcon-180b", "fp8"),
    ("gd-8xh100ib-i128", "llama-3.1-405b", "fp8"), ("gd-8xh100ib-i128", "nemotron-4-340b", "fp8"),
    ("rtxp6000-8x", "llama-3.1-70b", "fp8"), ("rtxp6000-8x", "mixtral-8x7b", "fp8"),
    ("gd-8xl40s-i128", "qwen2.5-32b", "fp8"), ("gd-8xl40-i128", "qwen2.5-32b", "fp8"),
    ("gd-8xa100-i128", "llama-3.1-405b", "int8"), ("gd-8xa100-i128", "falcon-180b", "int8"),  # no FP8 on A100
]


@pytest.mark.parametrize("itype,preset,precision", GUIDE_INFERENCE)
def test_guide_inference_examples_fit(itype, preset, precision):
    gpus = 1 if CATALOG.get(itype).nvlink_domain_gpus == 1 else 8  # the guide's "1 GPU" rows
    spec = inference(preset, precision, instanceTypes=[itype], maxNodes=1, headroom=0)
    p = plan(spec, CATALOG)
    assert p.chosen is not None, p.rejected
    assert p.chosen.placement.total_gpus <= gpus


def test_guide_gh200_inference_needs_its_host_memory():
    spec = inference("llama-3.1-405b", "fp8", instanceTypes=["gd-1xgh200"], maxNodes=1, headroom=0)
    assert plan(spec, CATALOG).chosen is None
    host = inference("llama-3.1-405b", "fp8", instanceTypes=["gd-1xgh200"], maxNodes=1, headroom=0,
                     useHostMemory=True)
    assert plan(host, CATALOG).chosen is not None


@pytest.mark.parametrize("itype,gpus,nodes,preset", [
    ("gb200-4x", 72, 18, "nemotron-4-340b"), ("gb200-4x", 72, 18, "llama-3.1-405b"),
    ("b200-8x", 8, 1, "llama-3.1-70b"), ("b200-8x", 8, 1, "mixtral-8x7b"),
])
def test_guide_training_examples_fit(itype, gpus, nodes, preset):
    p = plan(zero3_training(preset, gpus, instanceTypes=[itype], maxNodes=nodes), CATALOG)
    assert p.chosen is not None, p.rejected


@pytest.mark.parametrize("itype,preset", [
    ("gd-8xh200ib-i128", "llama-3.1-70b"), ("gd-8xh100ib-i128", "qwen2.5-32b"), ("gd-8xa100-i128", "qwen2.5-32b"),
])
def test_guide_training_examples_at_its_limit_need_pure_bf16(itype, preset):
    """16 bytes/parameter fills these systems exactly, leaving nothing for activations or the CUDA
    context: with fp32 master weights they do not fit; in pure bf16 (8 bytes/parameter) they do."""
    assert plan(zero3_training(preset, 8, instanceTypes=[itype], maxNodes=1), CATALOG).chosen is None
    assert plan(zero3_training(preset, 8, master="none", instanceTypes=[itype], maxNodes=1), CATALOG).chosen


# --- layouts the engines run, and which GPU (issue 12) ----------------------------------------------

def test_405b_fp8_on_one_h100_node_is_tensor_8_not_a_pipeline_of_7():
    """The guide's example: 405B at fp8 fits one 8 x H100 node, served at tensor parallel 8."""
    c = plan(inference("llama-3.1-405b", "fp8", instanceTypes=["gd-8xh100ib-i128"]), CATALOG).chosen.placement
    assert (c.nodes, c.total_gpus, c.tensor, c.pipeline) == (1, 8, 8, 1)


def test_deepseek_v3_fp8_on_h200_fills_the_node_with_tensor_and_expert_parallel():
    c = plan(inference("deepseek-v3", "fp8", instanceTypes=["gd-8xh200ib-i128"]), CATALOG).chosen
    p = c.placement
    assert (p.tensor, p.pipeline, p.expert) == (8, 1, 8)
    assert c.estimate.max_concurrency >= 1


def test_planned_tensor_degrees_are_powers_of_two_and_pipelines_cross_nodes():
    for preset, precision, itype in [("llama-3.1-405b", "bf16", "gd-8xh100ib-i128"),
                                     ("llama-3.1-70b", "bf16", "gd-8xl40s-i128"),
                                     ("qwen2.5-72b", "bf16", "gd-8xa100-i128")]:
        p = plan(inference(preset, precision, instanceTypes=[itype]), CATALOG).chosen.placement
        assert p.tensor & (p.tensor - 1) == 0, (preset, p)
        if p.pipeline > 1:  # stages only once tensor parallel fills the node
            assert p.tensor == p.gpus_per_node and p.total_gpus % p.gpus_per_node == 0, (preset, p)


def test_a_fixed_layout_may_use_any_degree_the_engine_accepts():
    spec = parse_spec(dict(model={"preset": "llama-3.1-70b"}, workload="inference", parallelism={"tensor": 4},
                           placement={"instanceTypes": ["gd-8xh100ib-i128"]}))
    assert plan(spec, CATALOG).chosen.placement.tensor == 4
    six = spec.model_copy(update={"parallelism": spec.parallelism.model_copy(update={"tensor": 6})})
    assert "must divide numAttentionHeads 64" in plan(six, CATALOG).rejected[0].reason


@pytest.mark.parametrize("doc", [
    {"model": {"preset": "qwen2.5-7b"}, "workload": "training", "training": {"method": "lora"}},
    {"model": {"preset": "llama-3.1-8b"}, "workload": "inference"},
])
def test_small_jobs_go_to_small_gpus_not_the_newest_racks(doc):
    p = plan(parse_spec(doc), CATALOG).chosen.placement
    assert p.instance_type not in ("gb300-4x", "gb200-4x", "b200-8x"), p
    assert p.total_gpus <= 2


def test_fewest_gpus_keeps_the_old_ranking():
    doc = {"model": {"preset": "qwen2.5-7b"}, "workload": "training", "training": {"method": "lora"}}
    cheap = plan(parse_spec(doc), CATALOG).chosen.placement
    fewest = plan(parse_spec({**doc, "placement": {"objective": "fewestGPUs"}}), CATALOG).chosen.placement
    assert fewest.total_gpus == 1 and fewest.total_gpus <= cheap.total_gpus


def test_prices_rank_the_whole_job_before_the_proxy():
    """A priced catalog: the cheapest job wins even on the newest GPU."""
    priced = load_catalog("instanceTypes: {gb300-4x: {pricePerHour: 1}}")
    spec = inference("llama-3.1-8b")
    assert plan(spec, priced).chosen.placement.instance_type == "gb300-4x"
    assert plan(spec, CATALOG).chosen.placement.instance_type != "gb300-4x"


def test_a_type_the_engine_refuses_says_why_not_how_many_gpus():
    """vLLM from 0.9.1 refuses to start when util x total exceeds what is free at start-up (startup.py
    INIT_FREE_CHECK): at gpuMemoryUtilization 0.99 on a 48 GB card the CUDA context alone is more than the 1%
    left, which no number of GPUs changes."""
    spec = parse_spec({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
                       "inference": {"engine": "vllm", "engineVersion": "0.10.1", "gpuMemoryUtilization": 0.99},
                       "placement": {"instanceTypes": ["gd-8xl40s-i128"]}})
    p = plan(spec, CATALOG)
    (rejected,) = p.rejected
    assert p.chosen is None and rejected.reason.startswith("vllm 0.10.1 would refuse to start: at start-up")
    assert "needs more than" not in rejected.reason and "lower gpuMemoryUtilization" in rejected.reason


@pytest.mark.parametrize("preset,release,utilization", [
    ("deepseek-v3", None, None), ("deepseek-v3", "0.8.5", 1.0), ("llama-3.1-405b", "0.34.0", None),
    ("qwen3-235b-a22b", "0.14.0", 0.95), ("gpt-oss-120b-mxfp4", "0.10.1", None), ("llama-3.1-70b", "0.7.3", 1.0)])
def test_layouts_skipped_for_overflowing_weights_never_fit(preset, release, utilization):
    """The planner skips estimating a vLLM layout whose weights alone fill the GPU (vllm_weights_overflow): wherever
    the check says so, the estimate gives no request a place, so the plan is the one the estimates would give."""
    inf = dict(contextLength=4096, concurrency=1)
    if release:
        inf["engineVersion"] = release
    if utilization:
        inf["gpuMemoryUtilization"] = utilization
    spec = parse_spec(dict(model={"preset": preset}, workload="inference", precision="fp8", inference=inf))
    a = resolve(spec.model)
    skipped = 0
    for t in CATALOG.instance_types.values():
        if pre_ampere_refusal(spec, a, t.gpu):  # fp8 on Volta and Turing: the plan rejects the type unestimated
            continue
        for tensor in tensor_degrees(a, t.tensor_parallel_limit):
            for pipeline in (1, 2, 4):
                layout = Layout(tensor=tensor, pipeline=pipeline)
                if vllm_weights_overflow(vllm_weights(spec, a, layout, t.gpu), t.gpu):
                    skipped += 1
                    est = estimate_arch(spec, a, layout, t.gpu)
                    assert est.kv_cache_pool_bytes == 0 and est.max_concurrency == 0, (t.name, layout)
    assert skipped  # each model overflows some GPU at tensor 1
