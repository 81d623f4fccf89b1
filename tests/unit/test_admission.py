"""Admission, without a cluster: the validating webhook's verdict (rackfit.planner.admission.check) and
the pod webhook's patches (rackfit.operator.admission: the hints added to a new pod, and the patch that
pins a gated pod to its domain and lifts rackfit's gate)."""

from __future__ import annotations

import asyncio
import copy
import math

import kopf
import pytest
from prometheus_client.registry import CollectorRegistry

from rackfit.catalog import load_catalog
from rackfit.errors import InvalidWorkload
from rackfit.estimator import estimate
from rackfit.names import GATE, GPU, PLACED_ANNOTATION, WORKLOAD_LABEL
from rackfit.operator import gating as webhook
from rackfit.operator.config import OperatorConfig
from rackfit.operator.context import OperatorContext
from rackfit.planner import plan
from rackfit.planner.admission import check
from rackfit.planner.inventory import NodeInfo
from rackfit.spec import parse_spec
from rackfit.units import MiB
from tooling import placement

CATALOG = load_catalog()
SMALL = {"model": {"preset": "llama-3.1-8b"}, "workload": "inference"}
TOO_BIG = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
           "placement": {"instanceTypes": ["gd-8xl40s-i128"], "maxNodes": 1}}


def refused(doc, catalog=CATALOG) -> tuple[str, str]:
    with pytest.raises(InvalidWorkload) as e:
        check(doc, catalog)
    (error,) = e.value.errors
    return error


# --- the validating webhook's verdict -------------------------------------------------------------

def test_a_normal_workload_is_admitted_without_warnings():
    assert check(SMALL, CATALOG) == []
    manifest = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": "x"}, "spec": SMALL}
    assert check(manifest, CATALOG) == []


def test_an_impossible_workload_is_refused_naming_the_field_and_what_would_fit():
    field, msg = refused(TOO_BIG)
    assert field == "spec.placement"
    # what the allowed type holds under the limit, and how many of its GPUs it would take without it
    assert "gd-8xl40s-i128 with maxNodes 1 holds at most 8 x 48 GB" in msg
    unlimited = {**TOO_BIG, "placement": {"instanceTypes": ["gd-8xl40s-i128"]}}
    need = plan(parse_spec(unlimited), CATALOG).chosen.placement
    assert need.total_gpus > 8
    assert f"needs at least {need.total_gpus} x L40S 48 GB ({need.nodes} nodes)" in msg
    assert "gd-8xl40s-i128: needs more than 8 GPUs" in msg  # the planner's own reason follows


def test_a_fixed_layout_that_does_not_fit_is_refused_on_spec_parallelism():
    doc = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "parallelism": {"tensor": 1},
           "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}
    field, msg = refused(doc)
    assert field == "spec.parallelism"
    assert "needs at least" in msg and "H100 80 GB" in msg and "the fixed layout does not fit" in msg
    assert "leaving nothing of the vllm budget" in msg


def test_tensor_parallel_wider_than_every_nvlink_domain_is_refused():
    doc = {**SMALL, "parallelism": {"tensor": 16}, "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}
    field, msg = refused(doc)
    assert field == "spec.parallelism.tensor"
    assert "16 exceeds" in msg and "at most 8" in msg and "gd-8xh100ib-i128 8" in msg


def test_an_unknown_instance_type_is_refused_with_the_field_and_the_known_ones():
    field, msg = refused({**SMALL, "placement": {"instanceTypes": ["gd-8xh100ib-i128", "h100-80g"]}})
    assert field == "spec.placement.instanceTypes"
    assert "h100-80g" in msg and "gd-8xh100ib-i128" in msg and "b200-8x" in msg


def test_an_unknown_preset_is_refused_with_the_field_and_the_known_ones():
    field, msg = refused({**SMALL, "model": {"preset": "llama-9"}})
    assert field == "spec.model.preset"
    assert "llama-9" in msg and "llama-3.1-8b" in msg


def test_an_invalid_spec_is_refused_with_the_field():
    assert refused({**SMALL, "precision": "fp6"})[0] == "spec.precision"


def _one_gpu_type(total_bytes: int, fraction: float):
    """A catalog of one single-GPU type whose memory the workload's `total_bytes` fills to `fraction`."""
    mib = math.ceil(total_bytes / fraction / MiB)
    return load_catalog(f"""replace: true
instanceTypes:
  tight-1x:
    gpu: {{model: T1, product: NVIDIA-T1, memoryGB: {mib * MiB / 1e9:.3f}, memoryMiB: {mib}, architecture: hopper}}
    gpusPerNode: 1
    nvlinkDomainGPUs: 1
""")


# one GPU only (maxNodes 1 of a one-GPU type), no headroom: the chosen estimate is the one-GPU estimate
TIGHT = {**SMALL, "inference": {"engine": "transformers", "contextLength": 32768, "concurrency": 8},
         "placement": {"instanceTypes": ["tight-1x"], "maxNodes": 1, "headroom": 0}}


@pytest.mark.parametrize("fraction", [0.97, 0.999])
def test_a_near_miss_is_admitted_with_a_warning(fraction):
    total = estimate(parse_spec(TIGHT)).total_bytes
    catalog = _one_gpu_type(total, fraction)
    assert plan(parse_spec(TIGHT), catalog).chosen.estimate.total_bytes == total
    (warning,) = check(TIGHT, catalog)
    assert warning.startswith("near miss:") and "under 5%" in warning and "tight-1x" in warning


@pytest.mark.parametrize("fraction", [0.80, 0.94])
def test_five_percent_or_more_to_spare_is_no_near_miss(fraction):
    catalog = _one_gpu_type(estimate(parse_spec(TIGHT)).total_bytes, fraction)
    assert check(TIGHT, catalog) == []


def test_a_serving_engine_near_miss_counts_requests():
    """vLLM on an H100: the concurrency that just fits warns, one fewer does not."""
    doc = {**SMALL, "inference": {"contextLength": 4096, "concurrency": 1},
           "placement": {"instanceTypes": ["gd-8xh100ib-i128"], "maxNodes": 1}, "parallelism": {"tensor": 1}}
    # a context that ten requests just fill: the cache holds 10.0x, within 5% of 10
    context = plan(parse_spec(doc), CATALOG).chosen.estimate.kv_cache_tokens // 10 // 16 * 16
    doc["inference"]["contextLength"] = context
    most = int(plan(parse_spec(doc), CATALOG).chosen.estimate.max_concurrency)
    assert most == 10
    at_most = {**doc, "inference": {"contextLength": context, "concurrency": most}}
    fewer = {**doc, "inference": {"contextLength": context, "concurrency": most - 1}}
    (warning,) = check(at_most, CATALOG)
    assert warning.startswith("near miss:") and f"{most} needed" in warning
    band = plan(parse_spec(at_most), CATALOG).chosen.estimate.error_band
    assert f"this regime's measured error is {band}" in warning  # the KV cache's band, or "unmeasured"
    assert check(fewer, CATALOG) == []
    field, msg = refused({**doc, "inference": {"contextLength": context, "concurrency": most + 1}})
    assert field == "spec.parallelism" and f"requests of contextLength {context}" in msg


def test_the_same_workload_one_gpu_too_small_is_refused():
    catalog = _one_gpu_type(estimate(parse_spec(TIGHT)).total_bytes, 1.02)
    field, msg = refused(TIGHT, catalog)
    assert field == "spec.placement" and "tight-1x with maxNodes 1 holds at most 1 x" in msg


# --- the pod webhook's patches --------------------------------------------------------------------

PLACEMENT = placement()
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
OTHER_GATE = {"name": "example.com/quota"}


def pod(gpus=None, requests=None, gates=(), selector=None, tolerations=None, sidecar=True) -> dict:
    main = {"name": "worker", "image": "vllm/vllm-openai"}
    resources = {}
    if gpus is not None:
        resources["limits"] = {GPU: str(gpus), "cpu": "16"}
    if requests is not None:
        resources["requests"] = {GPU: str(requests)}
    if resources:
        main["resources"] = resources
    spec = {"containers": [main, {"name": "sidecar", "image": "busybox"}] if sidecar else [main]}
    if gates:
        spec["schedulingGates"] = [dict(g) for g in gates]
    if selector:
        spec["nodeSelector"] = dict(selector)
    if tolerations is not None:
        spec["tolerations"] = [dict(t) for t in tolerations]
    return spec


@pytest.fixture
def tolerations():
    """The operator's placement tolerations (RACKFIT_TOLERATIONS) for one test: `tolerations(value)` sets
    them, `tolerations.value` reads them; none by default."""
    def set_to(value):
        set_to.value = value
    set_to([])
    return set_to


def test_an_unplaced_workload_s_pod_gets_only_the_gate(tolerations):
    tolerations([GPU_TOLERATION])
    assert webhook.pod_hints(pod(), None, None, tolerations.value) == {"schedulingGates": [{"name": GATE}]}


def test_the_gate_is_added_after_other_gates_and_never_twice(tolerations):
    assert webhook.pod_hints(pod(gates=[OTHER_GATE]), None) == {"schedulingGates": [OTHER_GATE, {"name": GATE}]}
    assert webhook.pod_hints(pod(gates=[OTHER_GATE, {"name": GATE}]), None) == {}


def test_a_placed_workload_s_pod_gets_the_instance_type_gpu_limit_and_tolerations(tolerations):
    tolerations([GPU_TOLERATION])
    spec = pod(selector={"team": "a"}, tolerations=[{"key": "x", "operator": "Exists"}])
    before = copy.deepcopy(spec)
    hints = webhook.pod_hints(spec, PLACEMENT, None, tolerations.value)
    assert spec == before  # the pod it was given is left as it is
    assert hints["schedulingGates"] == [{"name": GATE}]
    # the instance type only: the NVLink domain is pinned when the gate is lifted (ungate_patch)
    assert hints["nodeSelector"] == {"team": "a", "node.kubernetes.io/instance-type": "gb200-4x"}
    main, sidecar = hints["containers"]
    assert main["resources"]["limits"] == {GPU: "4"}
    assert sidecar == before["containers"][1]  # only the first container gets the GPUs
    assert hints["tolerations"] == [{"key": "x", "operator": "Exists"}, GPU_TOLERATION]


def test_an_existing_gpu_limit_selector_and_toleration_are_kept(tolerations):
    tolerations([GPU_TOLERATION])
    spec = pod(gpus=8, gates=[{"name": GATE}], selector={"node.kubernetes.io/instance-type": "gb200-4x", "team": "a"},
               tolerations=[GPU_TOLERATION])
    hints = webhook.pod_hints(spec, PLACEMENT, None, tolerations.value)
    assert "schedulingGates" not in hints  # already gated
    assert hints["containers"][0]["resources"]["limits"] == {GPU: "8", "cpu": "16"}  # never overridden
    assert hints["nodeSelector"] == {"node.kubernetes.io/instance-type": "gb200-4x", "team": "a"}
    assert "tolerations" not in hints  # nothing missing


def test_no_tolerations_configured_adds_none(tolerations):
    hints = webhook.pod_hints(pod(), PLACEMENT, None, tolerations.value)
    assert "tolerations" not in hints
    assert set(hints) == {"schedulingGates", "nodeSelector", "containers"}


def test_mutate_pod_writes_the_hints_of_its_workload_s_placement(tolerations):
    labels = {WORKLOAD_LABEL: "llm"}
    placed, unplaced = kopf.Patch(), kopf.Patch()
    env = {"RACKFIT_TENSOR_PARALLEL_SIZE": "8", "RACKFIT_NNODES": "2"}
    memo = kopf.Memo(ctx=OperatorContext.build(OperatorConfig(tolerations=tolerations.value), CollectorRegistry()))
    asyncio.run(webhook.mutate_pod(spec=pod(), meta={}, labels=labels, namespace="ns", patch=placed, memo=memo,
                                   placements={("ns", "llm"): [PLACEMENT]}, plan_envs={("ns", "llm"): [env]}))
    asyncio.run(webhook.mutate_pod(spec=pod(), meta={}, labels=labels, namespace="ns", patch=unplaced, memo=memo,
                                   placements={("other", "llm"): [PLACEMENT]}, plan_envs={("other", "llm"): [env]}))
    # placed already: pinned to the domain and marked placed, never gated
    assert placed["spec"] == webhook.pinned(pod(), webhook.pod_hints(pod(), PLACEMENT, env), PLACEMENT)
    assert "schedulingGates" not in placed["spec"]
    assert placed["spec"]["nodeSelector"] == PLACEMENT.node_selector  # the instance type and the domain
    assert placed["metadata"]["annotations"] == {PLACED_ANNOTATION: "nvidia.com/gpu.clique=u.1"}
    assert placed["spec"]["containers"][0]["resources"]["limits"] == {GPU: "4"}
    assert placed["spec"]["containers"][0]["env"] == [{"name": k, "value": v} for k, v in env.items()]
    assert unplaced["spec"] == {"schedulingGates": [{"name": GATE}]} and "metadata" not in unplaced


def test_a_stale_pod_of_a_placed_workload_stays_gated(tolerations):
    """A ReplicaSet's pod from the template before it was pinned (8 GPUs where the plan books 4, no
    domain selector) is one the rollout replaces: it is gated, not pinned."""
    memo = kopf.Memo(ctx=OperatorContext.build(OperatorConfig(tolerations=tolerations.value), CollectorRegistry()))
    meta = {"ownerReferences": [{"kind": "ReplicaSet", "name": "d-1", "controller": True}]}
    old, new = kopf.Patch(), kopf.Patch()
    for spec, patch in ((pod(gpus=8), old), (pod(gpus=4, selector=dict(PLACEMENT.node_selector)), new)):
        asyncio.run(webhook.mutate_pod(spec=spec, meta=meta, labels={WORKLOAD_LABEL: "llm"}, namespace="ns",
                                       patch=patch, memo=memo, placements={("ns", "llm"): [PLACEMENT]},
                                       plan_envs={}))
    assert old["spec"]["schedulingGates"] == [{"name": GATE}] and "metadata" not in old
    assert "schedulingGates" not in new["spec"] and PLACED_ANNOTATION in new["metadata"]["annotations"]


def test_the_plan_s_variables_go_to_every_container_that_does_not_set_them(tolerations):
    spec = pod()
    spec["containers"][1]["env"] = [{"name": "RACKFIT_NNODES", "value": "1"}, {"name": "OTHER", "value": "x"}]
    hints = webhook.pod_hints(spec, PLACEMENT, {"RACKFIT_TENSOR_PARALLEL_SIZE": "8", "RACKFIT_NNODES": "2"})
    first, sidecar = hints["containers"]
    assert first["env"] == [{"name": "RACKFIT_TENSOR_PARALLEL_SIZE", "value": "8"},
                            {"name": "RACKFIT_NNODES", "value": "2"}]
    assert sidecar["env"] == [{"name": "RACKFIT_NNODES", "value": "1"}, {"name": "OTHER", "value": "x"},
                              {"name": "RACKFIT_TENSOR_PARALLEL_SIZE", "value": "8"}]  # never overridden
    assert "env" not in webhook.pod_hints(pod(), None, {"RACKFIT_NNODES": "2"}).get("containers", [{}])[0]


def strategic_merge(spec: dict, patch: dict) -> dict:
    """What the API server does with ungate_patch: nodeSelector merges as a map; schedulingGates
    merge by name, `$patch: delete` removing the one named."""
    out = copy.deepcopy(spec)
    out["nodeSelector"] = {**(out.get("nodeSelector") or {}), **patch["spec"]["nodeSelector"]}
    deleted = {g["name"] for g in patch["spec"]["schedulingGates"] if g.get("$patch") == "delete"}
    assert all(g.get("$patch") == "delete" for g in patch["spec"]["schedulingGates"]), "only deletions expected"
    out["schedulingGates"] = [g for g in out.get("schedulingGates") or [] if g["name"] not in deleted]
    return out


def test_ungate_patch_pins_the_domain_deletes_only_rackfit_s_gate_and_marks_the_pod_placed():
    spec = pod(gpus=4, gates=[OTHER_GATE, {"name": GATE}], selector={"team": "a"})
    patch = webhook.ungate_patch({"spec": spec}, PLACEMENT)
    assert patch == {"metadata": {"annotations": {PLACED_ANNOTATION: "nvidia.com/gpu.clique=u.1"}},
                     "spec": {"nodeSelector": PLACEMENT.node_selector,
                              "schedulingGates": [{"$patch": "delete", "name": GATE}]}}
    after = strategic_merge(spec, patch)
    assert after["schedulingGates"] == [OTHER_GATE]
    assert after["nodeSelector"] == {"team": "a", "node.kubernetes.io/instance-type": "gb200-4x",
                                     "nvidia.com/gpu.clique": "u.1"}
    patch["spec"]["nodeSelector"]["nvidia.com/gpu.clique"] = "u.9"
    assert PLACEMENT.node_selector["nvidia.com/gpu.clique"] == "u.1"  # a copy, not the placement's own map


def test_ungate_patch_counts_gpu_requests_and_accepts_more_than_the_placement():
    assert webhook.ungate_patch({"spec": pod(requests=4, gates=[{"name": GATE}])}, PLACEMENT) is not None
    assert webhook.ungate_patch({"spec": pod(gpus=8, gates=[{"name": GATE}])}, PLACEMENT) is not None


def test_nothing_to_ungate_without_rackfit_s_gate():
    assert webhook.ungate_patch({"spec": pod(gpus=4)}, PLACEMENT) is None
    assert webhook.ungate_patch({"spec": pod(gpus=4, gates=[OTHER_GATE])}, PLACEMENT) is None


@pytest.mark.parametrize("gpus", [None, 0, 1, 3])
def test_a_stale_pod_below_the_placement_s_gpus_is_not_ungated(gpus):
    """Made before its workload was placed (a pod's resources cannot change): its controller makes it again."""
    spec = pod(gpus=gpus, gates=[{"name": GATE}])
    assert webhook.stale(spec, PLACEMENT)
    assert webhook.ungate_patch({"spec": spec}, PLACEMENT) is None


def owned(spec: dict, kind: str, annotations: dict | None = None, node: str | None = None) -> dict:
    meta = {"name": "p", "labels": {WORKLOAD_LABEL: "llm"},
            "ownerReferences": [{"kind": kind, "name": "x", "controller": True, "uid": "u"}]}
    if annotations:
        meta["annotations"] = annotations
    if node:
        spec = {**spec, "nodeName": node}
    return {"metadata": meta, "spec": spec, "status": {"phase": "Running" if node else "Pending"}}


@pytest.mark.parametrize("kind", ["ReplicaSet", "StatefulSet"])
def test_a_pod_of_a_template_rackfit_pins_is_ungated_only_as_the_pinned_template_makes_it(kind):
    """A Deployment's pod made before the template was patched (8 GPUs where the plan books 4, or
    without the domain's selector) would hold GPUs its replacement needs: it is never ungated."""
    pinned = dict(PLACEMENT.node_selector)
    assert webhook.ungate_patch(owned(pod(gpus=4, gates=[{"name": GATE}], selector=pinned), kind), PLACEMENT)
    assert webhook.ungate_patch(owned(pod(gpus=8, gates=[{"name": GATE}], selector=pinned), kind), PLACEMENT) is None
    assert webhook.ungate_patch(owned(pod(gpus=4, gates=[{"name": GATE}]), kind), PLACEMENT) is None
    # a Job's pods keep the user's GPU limit, which may be larger
    assert webhook.ungate_patch(owned(pod(gpus=8, gates=[{"name": GATE}]), "Job"), PLACEMENT)


RACK1 = NodeInfo.from_labels("n1", {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": "u.1"}, 4)
RACK2 = NodeInfo.from_labels("n2", {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": "u.2"}, 4)


def test_a_bound_pod_that_escaped_the_gate_is_found_with_why():
    pinned = dict(PLACEMENT.node_selector)
    inside = owned(pod(gpus=4, selector=pinned), "ReplicaSet", node="n1")
    assert webhook.escaped(inside, PLACEMENT, RACK1) is None  # as rackfit would have placed it (an older operator)
    assert "is not placed" in webhook.escaped(inside, None, RACK1)
    assert "outside the placement" in webhook.escaped(inside, PLACEMENT, RACK2)
    assert "outside the placement" in webhook.escaped(inside, PLACEMENT, None)  # not a GPU node of the fleet
    bigger = owned(pod(gpus=8, selector=pinned), "ReplicaSet", node="n1")
    assert "with 8 GPUs where" in webhook.escaped(bigger, PLACEMENT, RACK1)


def test_a_pod_rackfit_placed_or_one_holding_no_gpus_is_never_taken_for_an_escape():
    placed = owned(pod(gpus=4), "ReplicaSet", annotations={PLACED_ANNOTATION: "nvidia.com/gpu.clique=u.1"}, node="n2")
    assert webhook.escaped(placed, PLACEMENT, RACK2) is None  # an earlier placement: its rollout replaces it
    assert webhook.escaped(owned(pod(), "ReplicaSet", node="n2"), None, RACK2) is None  # no GPUs
    assert webhook.escaped(owned(pod(gpus=4), "ReplicaSet"), None, None) is None  # not bound
    done = owned(pod(gpus=4), "Job", node="n2")
    done["status"]["phase"] = "Succeeded"
    assert webhook.escaped(done, None, RACK2) is None
    going = owned(pod(gpus=4), "Job", node="n2")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert webhook.escaped(going, None, RACK2) is None
