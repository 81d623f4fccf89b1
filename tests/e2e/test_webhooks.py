"""Admission webhooks on a real kube-apiserver, called over TLS at the operator's url (kopf's
managed mode): bad manifests refused with messages, near-miss warnings, labelled pods gated then
bound inside one NVLink domain, unlabelled pods untouched, and no operator = labelled pods refused,
no other pod blocked."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client
from rackfit_process import Operator, running_operator, webhooks_in_effect


@pytest.fixture(scope="module")
def webhook_operator(cluster, kubectl, wait_for, tmp_path_factory) -> Iterator[Operator]:
    log = tmp_path_factory.mktemp("webhooks") / "operator.log"
    with running_operator(cluster, kubectl, wait_for, log, webhooks=True) as op:
        yield op


def _workload(name, spec):
    return {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": name}, "spec": spec}


def _apply(kubectl, ns, doc):
    return kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))


def test_impossible_workload_refused_with_what_would_fit(webhook_operator, kubectl, namespace):
    out = _apply(kubectl, namespace, _workload("huge", {
        "model": {"preset": "llama-3.1-405b"}, "workload": "inference",
        "placement": {"instanceTypes": ["gd-8xh100ib-i128"], "maxNodes": 1}}))
    assert out.returncode != 0
    assert "spec.placement" in out.stderr and "needs at least" in out.stderr and "maxNodes 1" in out.stderr


@pytest.mark.parametrize("spec,field", [
    ({"model": {"preset": "llama-9"}, "workload": "inference"}, "spec.model.preset"),
    ({"model": {"preset": "llama-3.1-8b"}, "workload": "inference",
      "placement": {"instanceTypes": ["h100"]}}, "spec.placement.instanceTypes"),
    ({"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "parallelism": {"tensor": 16},
      "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}, "spec.parallelism.tensor"),
    ({"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "parallelism": {"tensor": 1},
      "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}, "spec.parallelism"),
])
def test_bad_manifests_show_the_field(webhook_operator, kubectl, namespace, spec, field):
    out = _apply(kubectl, namespace, _workload("bad", spec))
    assert out.returncode != 0 and field in out.stderr, out.stderr


def test_near_miss_is_admitted_with_a_warning(webhook_operator, kubectl, namespace):
    # vLLM on one H100: ten requests of a context that ten just fill (10.0x), so under 5% to spare
    from rackfit.catalog import load_catalog
    from rackfit.planner import plan
    from rackfit.spec import parse_spec
    spec = {"model": {"preset": "llama-3.1-8b"}, "workload": "inference", "parallelism": {"tensor": 1},
            "inference": {"contextLength": 4096, "concurrency": 1},
            "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}}
    tokens = plan(parse_spec(spec), load_catalog()).chosen.estimate.kv_cache_tokens
    spec["inference"]["contextLength"] = tokens // 10 // 16 * 16
    most = int(plan(parse_spec(spec), load_catalog()).chosen.estimate.max_concurrency)
    assert most == 10
    spec["inference"]["concurrency"] = most
    out = _apply(kubectl, namespace, _workload("tight", spec))
    assert out.returncode == 0, out.stderr
    assert "Warning:" in out.stderr and "near miss" in out.stderr and f"{most} needed" in out.stderr


def _pod(name, labels=None):
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
                        spec=client.V1PodSpec(containers=[
                            client.V1Container(name="c", image="registry.k8s.io/pause:3.10")]))


def test_labelled_pods_are_gated_then_bound_in_one_domain(webhook_operator, kubectl, core_v1, namespace, wait_for):
    # a LeaderWorkerSet-style group: rackfit cannot patch its owner, so it works on the pods
    spec = {"model": {"preset": "llama-3.1-405b"}, "workload": "inference",
            "inference": {"contextLength": 16384, "concurrency": 16}, "placement": {"instanceTypes": ["gb200-4x"]}}
    assert _apply(kubectl, namespace, _workload("lws", spec)).returncode == 0
    wait_for(lambda: kubectl("wait", "--for=condition=Placed", "llmw/lws", "-n", namespace,
                             "--timeout=2s").returncode == 0, 60, "lws Placed")
    for i in range(2):
        core_v1.create_namespaced_pod(namespace, _pod(f"lws-{i}", {"rackfit.io/workload": "lws"}))

    def bound():
        pods = [core_v1.read_namespaced_pod(f"lws-{i}", namespace) for i in range(2)]
        return pods if all(p.spec.node_name for p in pods) else None
    pods = wait_for(bound, 60, "labelled pods bound")
    cliques = {core_v1.read_node(p.spec.node_name).metadata.labels["nvidia.com/gpu.clique"] for p in pods}
    assert len(cliques) == 1
    for p in pods:
        assert not p.spec.scheduling_gates
        assert p.spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"
        assert p.spec.node_selector["node.kubernetes.io/instance-type"] == "gb200-4x"


def test_pods_of_an_unplaced_workload_stay_gated(webhook_operator, kubectl, core_v1, custom_objects, namespace,
                                                  wait_for):
    spec = {"model": {"preset": "llama-3.1-70b"}, "workload": "inference", "precision": "fp8",
            "placement": {"instanceTypes": ["b200-8x"]}}  # no B200 nodes in the fleet
    assert _apply(kubectl, namespace, _workload("later", spec)).returncode == 0
    core_v1.create_namespaced_pod(namespace, _pod("later-0", {"rackfit.io/workload": "later"}))
    pod = core_v1.read_namespaced_pod("later-0", namespace)
    assert [g.name for g in pod.spec.scheduling_gates] == ["rackfit.io/placement"]

    def says_gated():
        obj = custom_objects.get_namespaced_custom_object("rackfit.io", "v1alpha1", namespace, "llmworkloads", "later")
        placed = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Placed"), {})
        return placed if "gated" in placed.get("message", "") else None
    placed = wait_for(says_gated, 60, "status says the pod is gated")
    assert placed["status"] == "False" and placed["reason"] == "WaitingForCapacity"
    status = core_v1.read_namespaced_pod("later-0", namespace).status
    assert any(c.reason == "SchedulingGated" for c in status.conditions or [])


def test_unlabelled_pods_are_untouched(webhook_operator, core_v1, namespace):
    core_v1.create_namespaced_pod(namespace, _pod("plain"))
    pod = core_v1.read_namespaced_pod("plain", namespace)
    assert not pod.spec.scheduling_gates and not pod.spec.node_selector


def test_operator_down_refuses_labelled_pods_and_no_others(cluster, kubectl, core_v1, namespace, wait_for,
                                                           webhook_operator):
    """Leave the webhook configurations in place (as after a crash), kill the operator: unlabelled pods
    are admitted; a labelled one is refused (failurePolicy Fail), never admitted ungated; with the
    operator back it is admitted, gated."""
    webhook_operator.kill()  # no clean exit: kopf cannot remove its configurations
    core_v1.create_namespaced_pod(namespace, _pod("after-crash"))
    with pytest.raises(client.ApiException) as refused:
        core_v1.create_namespaced_pod(namespace, _pod("after-crash-labelled", {"rackfit.io/workload": "x"}))
    assert "mutate-pod" in refused.value.body
    webhook_operator.start()
    wait_for(lambda: webhooks_in_effect(kubectl), 60, "the webhooks in effect again")
    core_v1.create_namespaced_pod(namespace, _pod("after-crash-labelled", {"rackfit.io/workload": "x"}))
    pod = core_v1.read_namespaced_pod("after-crash-labelled", namespace)
    assert [g.name for g in pod.spec.scheduling_gates] == ["rackfit.io/placement"]
