"""rackfit's answers to Kueue's admission check rackfit.io/fit, and an LLMWorkload whose target is Kueue's
(pure: kueuecheck.py, reconcile.py)."""

from __future__ import annotations

import json

from rackfit.catalog import load_catalog
from rackfit.operator import kueuecheck as k
from rackfit.operator.reconcile import Inputs, decide
from rackfit.planner.inventory import Inventory
from rackfit.spec import parse_spec

CATALOG = load_catalog()
TRAIN_70B = {"model": {"preset": "llama-3.1-70b"}, "workload": "training", "training": {"method": "full"},
             "placement": {"instanceTypes": ["gb200-4x"]}, "target": {"kind": "JobSet", "name": "t"}}
GB200 = {"node.kubernetes.io/instance-type": "gb200-4x"}


def one_rack(pods: int) -> dict:
    """A topology assignment of every pod to one NVL72 clique (Kueue's TAS)."""
    return {"levels": ["nvidia.com/gpu.clique"], "slices": [{"domainCount": 1, "valuesPerLevel": [
        {"universal": "rack-a"}], "podCounts": {"universal": pods}}]}


def workload(pods: int, state: str = "Pending", admitted: bool = True) -> dict:
    template = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    owner = [{"kind": "JobSet", "name": "t", "controller": True}]
    return {"metadata": {"name": "jobset-t-1", "ownerReferences": owner},
            "spec": {"podSets": [{"name": "workers", "count": pods, "template": template}]},
            "status": {**({"admission": {"podSetAssignments": [{"name": "workers", "flavors": {
                "nvidia.com/gpu": "gb200"}, "topologyAssignment": one_rack(pods)}]}} if admitted else {}),
                "admissionChecks": [{"name": "rackfit", "state": state, "message": ""},
                                    {"name": "other", "state": "Pending", "message": ""}]}}


def test_only_our_pending_checks_after_quota_is_reserved():
    assert k.pending(workload(2), {"rackfit"}) == ["rackfit"]
    assert k.pending(workload(2, admitted=False), {"rackfit"}) == []
    assert k.pending(workload(2, state="Ready"), {"rackfit"}) == []
    assert k.owner(workload(2)) == ("JobSet", "t") and k.assigned_flavors(workload(2)) == ["gb200"]


def test_ready_carries_the_plan_for_the_assigned_flavor_and_never_a_node_selector():
    v = k.verdict("train", parse_spec(TRAIN_70B), CATALOG, workload(2), GB200)
    assert v["state"] == "Ready" and v["message"].startswith("fits gb200-4x: 2 nodes x 4 GPUs")
    (update,) = v["podSetUpdates"]
    assert update["name"] == "workers" and update["labels"] == {"rackfit.io/workload": "train"}
    assert set(update) == {"name", "labels", "annotations"}  # no nodeSelector: TAS chose the rack
    env = json.loads(update["annotations"]["rackfit.io/kueue-plan"])
    assert env["RACKFIT_NNODES"] == "2" and env["RACKFIT_TENSOR_PARALLEL_SIZE"] == "8"


def test_rejected_with_the_estimate_s_message_retry_without_a_workload():
    v = k.verdict("train", parse_spec(TRAIN_70B), CATALOG, workload(1), GB200)
    assert v["state"] == "Rejected" and v["message"].startswith("needs 2 x 4 GPUs of gb200-4x")
    big = {**TRAIN_70B, "model": {"preset": "llama-3.1-405b"}, "placement": {}}
    v = k.verdict("big", parse_spec(big), CATALOG, workload(1), {"node.kubernetes.io/instance-type": "gd-8xl40s-i128"})
    assert v["state"] == "Rejected" and v["message"].startswith("gd-8xl40s-i128: ")
    assert k.verdict("x", None, CATALOG, workload(2), GB200)["state"] == "Retry"
    assert k.verdict("x", parse_spec(TRAIN_70B), CATALOG, workload(2), {})["state"] == "Rejected"


def test_with_state_replaces_only_our_check():
    checks = k.with_state(workload(2), "rackfit", {"state": "Ready", "message": "m", "podSetUpdates": []}, "T")
    assert checks[0] == {"name": "rackfit", "state": "Ready", "message": "m", "podSetUpdates": [],
                         "lastTransitionTime": "T"}
    assert checks[1] == {"name": "other", "state": "Pending", "message": ""}


def test_kueue_s_pods_get_the_variables_that_they_do_not_set():
    pod = {"containers": [{"name": "a", "env": [{"name": "RACKFIT_NNODES", "value": "9"}]}, {"name": "b"}]}
    out = k.kueue_pod_env(pod, json.dumps({"RACKFIT_NNODES": "2", "RACKFIT_TENSOR_PARALLEL_SIZE": "8"}))
    assert out["containers"][0]["env"] == [{"name": "RACKFIT_NNODES", "value": "9"},
                                           {"name": "RACKFIT_TENSOR_PARALLEL_SIZE", "value": "8"}]
    assert out["containers"][1]["env"][0] == {"name": "RACKFIT_NNODES", "value": "2"}
    assert k.kueue_pod_env({**pod, **out}, json.dumps({"RACKFIT_NNODES": "2"})) == {}


def _decide(suspend: bool, pods: int = 2) -> dict:
    template = {"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]}}
    target = {"kind": "JobSet", "metadata": {"name": "t", "labels": {"kueue.x-k8s.io/queue-name": "q"}},
              "spec": {"suspend": suspend, "replicatedJobs": [{"name": "w", "replicas": 1, "template": {"spec": {
                  "parallelism": pods, "completions": pods, "template": template}}}]}}
    d = decide(Inputs(name="train", spec=parse_spec(TRAIN_70B), generation=1, old={}, catalog=CATALOG,
                      fleet=Inventory().view(), target=target, kueue=True))
    assert d.reservation is None and not d.unsuspend  # nothing booked or started
    # no pinning: at most the topology Kueue's TAS reads, while suspended
    patched = (d.target_patch or {}).get("spec", {}).get("replicatedJobs", [{}])[0]
    assert "nodeSelector" not in json.dumps(patched) and (suspend and pods == 2 or d.target_patch is None)
    return next(c for c in d.status["conditions"] if c["type"] == "Placed")


def test_a_kueue_target_is_placed_by_kueue_not_by_rackfit():
    assert _decide(True)["reason"] == "PendingInKueue"
    wrong = _decide(True, pods=1)  # the check rejects it; Placed says what to change
    assert wrong["reason"] == "TargetShapeMismatch" and "1 pods" in wrong["message"]
    admitted = _decide(False)
    assert (admitted["status"], admitted["reason"]) == ("True", "AdmittedByKueue")
