"""What rackfit adds to a target and takes back (pure functions of the target's manifest)."""

from __future__ import annotations

import copy
import json

from rackfit.operator import targets


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
    """A small strategic-merge stand-in: dicts merge, None deletes, containers merge by name."""
    out = copy.deepcopy(obj)

    def go(dst, src):
        for k, v in src.items():
            if v is None:
                dst.pop(k, None)
            elif k == "containers":
                for c in v:
                    mine = next(x for x in dst[k] if x["name"] == c["name"])
                    go(mine, c)
            elif isinstance(v, dict) and isinstance(dst.get(k), dict):
                go(dst[k], v)
                if not dst[k]:
                    dst.pop(k)  # the API server drops a map emptied by a patch
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
    assert json.loads(again["metadata"]["annotations"][targets.APPLIED])["gpuLimit"]["previous"] is None


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
