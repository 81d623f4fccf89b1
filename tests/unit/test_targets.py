"""What rackfit adds to a target and takes back (pure functions of the target's manifest)."""

from __future__ import annotations

import copy
import json

from rackfit.estimator.result import EngineSettings, Estimate
from rackfit.operator import targets
from tooling import placement


def deployment(selector=None, limit=None, tolerations=None, replicas=1):
    container = {"name": "vllm", "image": "vllm/vllm-openai"}
    if limit is not None:
        container["resources"] = {"limits": {"nvidia.com/gpu": limit, "cpu": "8"}}
    pod = {"containers": [container, {"name": "sidecar", "image": "busybox"}]}
    if selector:
        pod["nodeSelector"] = dict(selector)
    if tolerations:
        pod["tolerations"] = list(tolerations)
    return {"kind": "Deployment", "metadata": {"name": "d", "annotations": {"owner": "me"}},
            "spec": {"replicas": replicas, "template": {"spec": pod}}}


def merge(obj, patch):
    """RFC 7386, as the API server applies the operator's patches: maps merge, None deletes, lists
    are replaced whole; a map emptied by the patch is dropped, as the API server drops it."""
    out = copy.deepcopy(obj)

    def go(dst, src):
        for k, v in src.items():
            if v is None:
                dst.pop(k, None)
            elif isinstance(v, dict) and isinstance(dst.get(k), dict):
                go(dst[k], v)
                if not dst[k]:
                    dst.pop(k)
            else:
                dst[k] = copy.deepcopy(v)
    go(out, patch)
    return out


SEL = {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": "u.1"}
TOL = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_place_then_idempotent_then_undo_restores_the_user_s_manifest():
    original = deployment(selector={"team": "a"}, limit="1", tolerations=[{"key": "x", "operator": "Exists"}])
    patch = targets.place_patch(original, "w", SEL, 4, TOL)
    placed = merge(original, patch)
    pod = placed["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"team": "a", **SEL}
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "4", "cpu": "8"}
    assert TOL[0] in pod["tolerations"] and {"key": "x", "operator": "Exists"} in pod["tolerations"]
    assert targets.place_patch(placed, "w", SEL, 4, TOL) is None  # nothing to do twice
    restored = merge(placed, targets.unplace_patch(placed))
    assert restored["spec"] == original["spec"]
    assert restored["metadata"]["annotations"] == {"owner": "me"}


def test_a_new_domain_replaces_only_rackfit_s_key():
    placed = merge(deployment(), targets.place_patch(deployment(), "w", SEL, 4, []))
    moved = {**SEL, "nvidia.com/gpu.clique": "u.2"}
    again = merge(placed, targets.place_patch(placed, "w", moved, 4, []))
    assert again["spec"]["template"]["spec"]["nodeSelector"] == moved
    # the GPU limit the user had before rackfit is still what undo restores
    assert json.loads(again["metadata"]["annotations"][targets.APPLIED])["gpuLimits"][0]["previous"] is None


def test_undo_leaves_values_the_user_changed():
    placed = merge(deployment(), targets.place_patch(deployment(), "w", SEL, 4, []))
    placed["spec"]["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.clique"] = "mine"
    placed["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "2"
    restored = merge(placed, targets.unplace_patch(placed))
    pod = restored["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.clique": "mine"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_jobs_get_scheduling_fields_only():
    job = {"kind": "Job", "metadata": {}, "spec": {"suspend": True, "parallelism": 2, "template": {"spec": {
        "containers": [{"name": "train", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}}}
    patch = targets.place_patch(job, "w", SEL, 4, [], set_limits=False)
    assert "containers" not in patch["spec"]["template"]["spec"]
    assert targets.requested_gpus(job) == 16


def test_nothing_to_undo_without_the_annotation():
    assert targets.unplace_patch(deployment(selector=SEL)) is None


def test_requested_gpus_counts_replicas():
    assert targets.requested_gpus(deployment(limit="8", replicas=3)) == 24
    assert targets.requested_gpus(deployment(limit="8", replicas=3), per_pod=4) == 12


def test_the_pod_template_gets_the_workload_label_and_loses_it_on_undo():
    original = deployment()
    patch = targets.place_patch(original, "w", {"k": "v"}, 4, [])
    placed = merge(original, patch)
    assert placed["spec"]["template"]["metadata"]["labels"] == {"rackfit.io/workload": "w"}
    assert targets.place_patch(placed, "w", {"k": "v"}, 4, []) is None
    assert "metadata" not in merge(placed, targets.unplace_patch(placed))["spec"]["template"]


ENV = {"RACKFIT_TENSOR_PARALLEL_SIZE": "8", "RACKFIT_NNODES": "2"}


def env_of(container):
    return {e["name"]: e["value"] for e in container.get("env") or []}


def test_the_variables_go_to_every_container_follow_a_re_plan_and_go_on_undo():
    original = deployment()
    original["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "HF_HOME", "value": "/cache"}]
    placed = merge(original, targets.place_patch(original, "w", SEL, 4, [], env=ENV))
    first, sidecar = placed["spec"]["template"]["spec"]["containers"]
    assert first["env"] == [{"name": "HF_HOME", "value": "/cache"}, *({"name": k, "value": v} for k, v in ENV.items())]
    assert env_of(sidecar) == ENV
    assert json.loads(placed["metadata"]["annotations"][targets.APPLIED])["env"] == ENV
    assert targets.place_patch(placed, "w", SEL, 4, [], env=ENV) is None
    # a re-plan to 4 GPUs: the values change in place, and a variable the new plan lacks goes
    replanned = merge(placed, targets.place_patch(placed, "w", SEL, 4, [], env={"RACKFIT_TENSOR_PARALLEL_SIZE": "4"}))
    assert env_of(replanned["spec"]["template"]["spec"]["containers"][0]) == {
        "HF_HOME": "/cache", "RACKFIT_TENSOR_PARALLEL_SIZE": "4"}
    restored = merge(replanned, targets.unplace_patch(replanned))
    assert restored["spec"] == original["spec"]


def test_a_variable_the_user_set_is_replaced_and_given_back_on_undo():
    original = deployment()
    mine = {"name": "RACKFIT_TENSOR_PARALLEL_SIZE", "value": "8"}
    original["spec"]["template"]["spec"]["containers"][0]["env"] = [mine]
    placed = merge(original, targets.place_patch(original, "w", SEL, 4, [], env={"RACKFIT_TENSOR_PARALLEL_SIZE": "4"}))
    assert env_of(placed["spec"]["template"]["spec"]["containers"][0]) == {"RACKFIT_TENSOR_PARALLEL_SIZE": "4"}
    again = merge(placed, targets.place_patch(placed, "w", SEL, 4, [], env={"RACKFIT_TENSOR_PARALLEL_SIZE": "2"}))
    assert merge(again, targets.unplace_patch(again))["spec"] == original["spec"]


def test_an_older_annotation_with_one_gpu_limit_is_still_undone():
    placed = merge(deployment(limit="1"), targets.place_patch(deployment(limit="1"), "w", SEL, 4, []))
    record = json.loads(placed["metadata"]["annotations"][targets.APPLIED])
    record["gpuLimit"] = record.pop("gpuLimits")[0]
    del record["gpuLimit"]["template"]
    placed["metadata"]["annotations"][targets.APPLIED] = json.dumps(record)
    restored = merge(placed, targets.unplace_patch(placed))
    assert restored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_a_patch_carries_the_resource_version_it_was_made_from():
    target = deployment()
    target["metadata"]["resourceVersion"] = "42"
    assert targets.place_patch(target, "w", SEL, 4, [])["metadata"]["resourceVersion"] == "42"


def lws(leader=True, size=1, replicas=1):
    worker = {"spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]}}
    lwt = {"size": size, "workerTemplate": worker}
    if leader:
        lwt["leaderTemplate"] = {"metadata": {"labels": {"role": "leader"}},
                                 "spec": {"containers": [{"name": "vllm-leader", "image": "vllm/vllm-openai"}]}}
    return {"kind": "LeaderWorkerSet", "metadata": {"name": "l", "resourceVersion": "7"},
            "spec": {"replicas": replicas, "leaderWorkerTemplate": lwt}}


def test_a_leader_worker_set_gets_the_group_size_and_both_templates():
    original = lws()
    patch = targets.place_patch(original, "w", SEL, 4, TOL, env=ENV, group_size=2)
    placed = merge(original, patch)
    lwt = placed["spec"]["leaderWorkerTemplate"]
    assert lwt["size"] == 2
    for key, container in (("leaderTemplate", "vllm-leader"), ("workerTemplate", "vllm")):
        pod = lwt[key]["spec"]
        assert pod["nodeSelector"] == SEL and pod["tolerations"] == TOL
        assert pod["containers"][0]["name"] == container
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "4"}
        assert env_of(pod["containers"][0]) == ENV
        assert lwt[key]["metadata"]["labels"]["rackfit.io/workload"] == "w"
    assert lwt["leaderTemplate"]["metadata"]["labels"]["role"] == "leader"
    assert targets.requested_gpus(placed) == 8
    assert targets.requested_gpus(original, per_pod=4, group_size=2) == 8
    assert targets.place_patch(placed, "w", SEL, 4, TOL, env=ENV, group_size=2) is None
    restored = merge(placed, targets.unplace_patch(placed))
    assert restored["spec"] == original["spec"]


def test_a_leader_worker_set_without_a_leader_template_uses_the_workers_for_both():
    placed = merge(lws(leader=False), targets.place_patch(lws(leader=False), "w", SEL, 4, [], group_size=3))
    assert "leaderTemplate" not in placed["spec"]["leaderWorkerTemplate"]
    assert targets.requested_gpus(placed) == 12


def js(parallelism=2, gpus="4", suspend=True):
    def rj(name, pods, limit):
        container = {"name": name, "image": "trainer"}
        if limit:
            container["resources"] = {"limits": {"nvidia.com/gpu": limit}}
        return {"name": name, "replicas": 1, "template": {"spec": {
            "parallelism": pods, "completions": pods, "template": {"spec": {"containers": [container]}}}}}
    return {"kind": "JobSet", "metadata": {"name": "t"}, "spec": {"suspend": suspend, "replicatedJobs": [
        rj("driver", 1, None), rj("workers", parallelism, gpus)]}}


def test_a_jobset_gets_scheduling_fields_in_every_replicated_job_and_loses_them_on_undo():
    original = js()
    placed = merge(original, targets.place_patch(original, "w", SEL, 4, TOL, env=ENV))
    for rj in placed["spec"]["replicatedJobs"]:
        pod = rj["template"]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == SEL and pod["tolerations"] == TOL
        assert "env" not in pod["containers"][0]  # the webhook gives the pods their variables
    workers = placed["spec"]["replicatedJobs"][1]["template"]["spec"]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"] == {"nvidia.com/gpu": "4"}  # the user's own
    assert targets.requested_gpus(placed) == 8
    assert merge(placed, targets.unplace_patch(placed))["spec"] == original["spec"]
    # started: only the annotations go
    started = merge(placed, {"spec": {"suspend": False}})
    assert set(targets.unplace_patch(started, scheduling=False)) == {"metadata"}


PLACEMENT = placement()


def test_shape_problems_name_the_field_and_what_is_allowed():
    assert targets.shape_problem(deployment(replicas=2), "Deployment/d", PLACEMENT).startswith(
        "spec.target.kind: one replica of the model spans 2 nodes (tensor 8 x pipeline 1 on 4-GPU gb200-4x nodes)")
    data_parallel = placement(tensor=4, data=2)
    assert targets.shape_problem(deployment(replicas=2), "Deployment/d", data_parallel) is None
    assert targets.shape_problem(lws(), "LeaderWorkerSet/l", PLACEMENT) is None
    assert targets.shape_problem(lws(replicas=None), "LeaderWorkerSet/l", PLACEMENT) is None  # LWS defaults to 1
    msg = targets.shape_problem(lws(replicas=2), "LeaderWorkerSet/l", PLACEMENT)
    assert msg.startswith("spec.replicas: 2 groups in LeaderWorkerSet/l") and "allowed: 1" in msg
    assert "spec.parallelism.data" in msg
    assert targets.shape_problem(js(parallelism=2), "JobSet/t", PLACEMENT) is None
    msg = targets.shape_problem(js(parallelism=3), "JobSet/t", PLACEMENT)
    assert msg.startswith("spec.replicatedJobs[workers]: 3 pods") and "allowed: 2" in msg


def test_plan_env_takes_the_engine_s_estimate_else_the_spec():
    from rackfit.spec import parse_spec
    spec = parse_spec({"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
                       "inference": {"contextLength": 16384, "concurrency": 16}})
    env = targets.plan_env(PLACEMENT, Estimate.model_construct(engine=None), spec)
    assert env == {"RACKFIT_TENSOR_PARALLEL_SIZE": "8", "RACKFIT_PIPELINE_PARALLEL_SIZE": "1",
                   "RACKFIT_DATA_PARALLEL_SIZE": "1", "RACKFIT_EXPERT_PARALLEL_SIZE": "1", "RACKFIT_NNODES": "2",
                   "RACKFIT_GPUS_PER_NODE": "4", "RACKFIT_INSTANCE_TYPE": "gb200-4x",
                   "RACKFIT_MAX_MODEL_LEN": "16384", "RACKFIT_GPU_MEMORY_UTILIZATION": "0.9",
                   "RACKFIT_MAX_NUM_SEQS": "16"}
    engine = EngineSettings(engine="vllm", gpu_memory_utilization=0.92, max_num_batched_tokens=8192, max_num_seqs=256,
                            max_model_len=16384)
    env = targets.plan_env(PLACEMENT, Estimate.model_construct(engine=engine), spec)
    assert env["RACKFIT_GPU_MEMORY_UTILIZATION"] == "0.92" and env["RACKFIT_MAX_NUM_SEQS"] == "256"
    training = parse_spec({"model": {"preset": "qwen2.5-7b"}, "workload": "training",
                           "training": {"method": "lora"}})
    assert "RACKFIT_MAX_MODEL_LEN" not in targets.plan_env(PLACEMENT, None, training)


def test_the_kinds_the_spec_allows_are_the_registered_adapters():
    """Adding a kind is one module and one line in targets/registry.py; the spec's enum follows it."""
    from typing import get_args

    from rackfit.operator.rbac import RULES
    from rackfit.spec import Target
    assert set(get_args(Target.model_fields["kind"].annotation)) == set(targets.ADAPTERS)
    for kind in targets.ADAPTERS.values():  # every kind's own verbs reach the ClusterRole
        assert ([kind.group], [kind.plural], list(kind.verbs)) in RULES
        assert kind.editable or kind.suspendable  # a kind whose templates rackfit can never edit must start suspended
