"""Volta (V100) and Turing (T4): the AWS instance types, what precisions run there, and how the planner ranks them."""

from __future__ import annotations

import pytest

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate_arch
from rackfit.estimator.cuda_graphs import FLASHINFER_WORKSPACE_BYTES, flashinfer_graph_workspace_bytes
from rackfit.estimator.result import Layout
from rackfit.models import resolve
from rackfit.planner import GENERATION_WEIGHT, plan
from rackfit.spec import parse_spec

CATALOG = load_catalog()
T4 = CATALOG.get("g4dn.xlarge").gpu
V100 = CATALOG.get("p3.2xlarge").gpu
A100 = CATALOG.get("gd-8xa100-i128").gpu


def serving(precision="fp16", version=None, preset="llama-3.2-1b", **inference):
    inf = dict(contextLength=4096, **inference) | ({"engineVersion": version} if version else {})
    return parse_spec(dict(model={"preset": preset}, workload="inference", precision=precision, inference=inf))


def _estimate(spec, gpu):
    return estimate_arch(spec, resolve(spec.model), Layout(), gpu)


def test_aws_instance_types_load():
    shapes = {name: (CATALOG.get(name).gpu.product, CATALOG.get(name).gpus_per_node,
                     CATALOG.get(name).nvlink_domain_gpus, CATALOG.get(name).gpu.architecture)
              for name in ("g4dn.xlarge", "g4dn.12xlarge", "g4dn.metal", "p3.2xlarge", "p3.8xlarge", "p3.16xlarge",
                           "p3dn.24xlarge")}
    assert shapes == {
        "g4dn.xlarge": ("Tesla-T4", 1, 1, "turing"),
        "g4dn.12xlarge": ("Tesla-T4", 4, 1, "turing"),
        "g4dn.metal": ("Tesla-T4", 8, 1, "turing"),
        "p3.2xlarge": ("Tesla-V100-SXM2-16GB", 1, 1, "volta"),
        "p3.8xlarge": ("Tesla-V100-SXM2-16GB", 4, 4, "volta"),
        "p3.16xlarge": ("Tesla-V100-SXM2-16GB", 8, 8, "volta"),
        "p3dn.24xlarge": ("Tesla-V100-SXM2-32GB", 8, 8, "volta"),
    }
    assert CATALOG.get("p3dn.24xlarge").gpu.memory_mib == 32510 and T4.memory_mib == 15360
    # V100 SXM2 boards are NVLink (cube mesh), the T4 is PCIe only
    assert V100.nvlink and not T4.nvlink
    assert CATALOG.get("g4dn.metal").tensor_parallel_limit == 8  # PCIe: inside the host
    assert CATALOG.get("g4dn.metal").gpu is not None and CATALOG.by_product("Tesla-T4").name == "g4dn.xlarge"


def test_formats_have_no_bf16_fp8_or_fp4():
    for gpu in (T4, V100):
        assert {"fp16", "fp32", "int8", "int4", "nf4"} <= gpu.formats
        assert not {"bf16", "fp8", "mxfp4", "nvfp4"} & gpu.formats


def test_generation_weight_below_ampere():
    assert GENERATION_WEIGHT["turing"] < GENERATION_WEIGHT["volta"] < GENERATION_WEIGHT["ampere"]


@pytest.mark.parametrize("gpu", [T4, V100])
def test_fp8_is_refused_naming_the_field(gpu):
    with pytest.raises(InvalidWorkload) as e:
        _estimate(serving("fp8"), gpu)
    (field, why), = e.value.errors
    assert field == "spec.precision" and "compute capability" in why and "fp16" in why
    assert _estimate(serving("fp8"), A100).total_bytes > 0  # Ampere runs it weight-only


def test_fp8_plan_rejects_g4dn_with_the_field():
    spec = serving("fp8").model_copy(update={"placement": parse_spec(dict(
        model={"preset": "llama-3.2-1b"}, workload="inference",
        placement={"instanceTypes": ["g4dn.xlarge", "gd-8xa100-i128"]})).placement})
    p = plan(spec, CATALOG)
    assert p.chosen.placement.instance_type == "gd-8xa100-i128"
    (why,) = [r.reason for r in p.rejected if r.instance_type == "g4dn.xlarge"]
    assert why.startswith("spec.precision: fp8 does not run on T4 (turing, compute capability 7.5)")


def test_bf16_is_cast_to_fp16_by_vllm_from_0_9():
    cast = _estimate(serving("bf16", "0.9.0"), T4)
    fp16 = _estimate(serving("fp16", "0.9.0"), T4)
    assert cast.total_bytes == fp16.total_bytes and cast.kv_cache_tokens == fp16.kv_cache_tokens
    assert any("as fp16" in n for n in cast.notes) and not any("as fp16" in n for n in fp16.notes)
    assert any("as fp16" in n for n in _estimate(serving("bf16"), T4).notes)  # the current release too


def test_bf16_is_refused_by_vllm_before_0_9_and_other_runtimes():
    with pytest.raises(InvalidWorkload) as e:
        _estimate(serving("bf16", "0.8.5"), V100)
    (field, why), = e.value.errors
    assert field == "spec.precision" and "vLLM 0.8.5 refuses bfloat16" in why and "--dtype half" in why
    with pytest.raises(InvalidWorkload) as e:
        _estimate(serving("bf16", engine="sglang"), T4)
    assert e.value.errors[0][0] == "spec.precision" and "sglang" in e.value.errors[0][1]
    train = parse_spec(dict(model={"preset": "llama-3.2-1b"}, workload="training", precision="bf16",
                            training=dict(microBatchSize=1, sequenceLength=1024)))
    with pytest.raises(InvalidWorkload):
        _estimate(train, V100)
    assert _estimate(train, A100).total_bytes > 0


def test_v0_fallback_is_noted_between_0_8_and_0_10_2():
    def noted(version):
        return any("runs its V0 engine" in n for n in _estimate(serving("fp16", version), T4).notes)
    assert noted("0.9.0") and noted("0.10.1")
    assert not noted("0.7.3") and not noted("0.10.2") and not noted(None)
    assert not any("V0" in n for n in _estimate(serving("fp16", "0.9.0"), A100).notes)


def test_v0_fallback_is_estimated_as_v0():
    """0.8.x-0.10.1 serve with V0 below 8.0 (S1552: "Initializing a V0 LLM engine (v0.8.2)" on a T4, VLLM_USE_V1 not
    set): the cache is V0's, the one the spec would get with vllmUseV1 false, not V1's (the context inside the
    budget before 0.9.1)."""
    for version in ("0.8.2", "0.10.1"):
        fallback = _estimate(serving("fp16", version, preset="llama-3.2-3b"), T4)
        v0 = _estimate(serving("fp16", version, preset="llama-3.2-3b", vllmUseV1=False), T4)
        assert fallback.kv_cache_tokens == v0.kv_cache_tokens > 0
        assert any("estimated as V0" in n for n in fallback.notes)
    v1 = _estimate(serving("fp16", "0.8.2", preset="llama-3.2-3b"), A100)
    assert v1.kv_cache_tokens != _estimate(serving("fp16", "0.8.2", preset="llama-3.2-3b", vllmUseV1=False),
                                           A100).kv_cache_tokens  # Ampere keeps V1


def test_plan_on_g4dn_picks_t4():
    spec = parse_spec(dict(model={"preset": "llama-3.2-1b"}, workload="inference", precision="fp16",
                           inference=dict(contextLength=4096)))
    p = plan(spec, CATALOG)
    assert p.chosen.placement.instance_type == "g4dn.xlarge"
    only = spec.model_copy(update={"placement": spec.placement.model_copy(
        update={"instance_types": ["g4dn.12xlarge", "p3.8xlarge"]})})
    assert plan(only, CATALOG).chosen.placement.instance_type == "g4dn.12xlarge"  # T4 weighs less than V100


def test_fp8_kv_cache_takes_no_flashinfer_workspace_before_ampere():
    """Below 8.0 vLLM V1 runs FlexAttention, not FlashInfer (platforms/cuda.py, 0.11.0)."""
    inf = serving("fp16", kvCachePrecision="fp8").inference
    assert flashinfer_graph_workspace_bytes(inf, A100) == FLASHINFER_WORKSPACE_BYTES
    assert flashinfer_graph_workspace_bytes(inf, T4) == 0 == flashinfer_graph_workspace_bytes(inf, V100)


def test_a_bf16_model_goes_to_a_pre_ampere_type_only_where_the_spec_names_it():
    # vLLM would cast it to fp16 (a narrower range): the planner never picks that for the user
    spec = parse_spec(dict(model={"preset": "llama-3.2-1b"}, workload="inference", precision="bf16",
                           inference=dict(contextLength=4096)))
    p = plan(spec, CATALOG)
    assert p.chosen.placement.instance_type not in ("g4dn.xlarge", "g4dn.12xlarge", "g4dn.metal", "p3.2xlarge")
    (why,) = [r.reason for r in p.rejected if r.instance_type == "g4dn.xlarge"]
    assert "name the type in placement.instanceTypes" in why
    named = spec.model_copy(update={"placement": spec.placement.model_copy(update={"instance_types": ["g4dn.xlarge"]})})
    chosen = plan(named, CATALOG).chosen
    assert chosen.placement.instance_type == "g4dn.xlarge" and any("as fp16" in n for n in chosen.estimate.notes)
