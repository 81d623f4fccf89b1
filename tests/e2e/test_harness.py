"""The e2e harness is a real Kubernetes: version, CEL validation, scheduling on GPU nodes, RBAC,
and the controllers (Deployments, Jobs, namespaces) with the simulated nodes left alone.

If one of these fails, every other e2e result is suspect, so they check the harness itself
rather than rackfit.
"""

from __future__ import annotations

import secrets
import textwrap
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.binaries import K8S_VERSION
from devcluster.fleet import SIMULATED_LABEL

H100 = "gd-8xh100ib-i128"


def test_version_is_the_built_release(cluster):
    version = client.VersionApi(cluster.api).get_code()
    if cluster.local:
        assert version.git_version == K8S_VERSION
    else:
        assert version.major == "1", version


CRD_GROUP, CRD_PLURAL = "e2e.rackfit.io", "harnesschecks"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{CRD_PLURAL}.{CRD_GROUP}"},
    "spec": {
        "group": CRD_GROUP,
        "scope": "Namespaced",
        "names": {"plural": CRD_PLURAL, "singular": "harnesscheck", "kind": "HarnessCheck"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object",
                "properties": {"minReplicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
                "x-kubernetes-validations": [{
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "minReplicas must not exceed maxReplicas",
                }],
            }}}},
        }],
    },
}


@pytest.fixture
def cel_crd(cluster, kubectl, namespace, wait_for):
    ext = client.ApiextensionsV1Api(cluster.api)
    try:
        ext.create_custom_resource_definition(CRD)
    except ApiException as e:
        if e.status != 409:  # left over from an interrupted run against a shared cluster
            raise
    wait_for(lambda: kubectl("get", CRD_PLURAL, "-n", namespace).returncode == 0, 30, f"{CRD_PLURAL} to be served")
    yield
    ext.delete_custom_resource_definition(CRD["metadata"]["name"])


def _check(name: str, namespace: str, lo: int, hi: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: {CRD_GROUP}/v1
        kind: HarnessCheck
        metadata: {{name: {name}, namespace: {namespace}}}
        spec: {{minReplicas: {lo}, maxReplicas: {hi}}}
        """)


def test_cel_rule_rejects_an_invalid_object(cel_crd, kubectl, namespace):
    ok = kubectl("apply", "-f", "-", input=_check("valid", namespace, 1, 2))
    assert ok.returncode == 0, ok.stderr

    bad = kubectl("apply", "-f", "-", input=_check("invalid", namespace, 3, 2))
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr
    assert "Invalid value" in bad.stderr


def _gpu_pod(name: str, gpus: int, node_selector: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            node_selector=node_selector,
            containers=[client.V1Container(
                name="main", image="registry.k8s.io/pause:3.10",
                resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}))],
        ),
    )


def _condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition | None:
    return next((c for c in (pod.status.conditions or []) if c.type == kind), None)


def test_scheduler_binds_a_gpu_pod_to_a_matching_node(core_v1, namespace, wait_for):
    core_v1.create_namespaced_pod(namespace, _gpu_pod("h100", 8, {"node.kubernetes.io/instance-type": H100}))

    pod = wait_for(lambda: (p := core_v1.read_namespaced_pod("h100", namespace)).spec.node_name and p,
                   30, "the scheduler to bind pod h100")

    node = core_v1.read_node(pod.spec.node_name)
    assert node.metadata.labels["node.kubernetes.io/instance-type"] == H100
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert _condition(pod, "PodScheduled").status == "True"


def test_pod_asking_for_more_gpus_than_any_node_has_stays_pending(core_v1, namespace, wait_for):
    core_v1.create_namespaced_pod(namespace, _gpu_pod("too-big", 1000))

    scheduled = wait_for(lambda: _condition(core_v1.read_namespaced_pod("too-big", namespace), "PodScheduled"),
                         30, "the scheduler to report on pod too-big")

    assert scheduled.status == "False"
    assert scheduled.reason == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in scheduled.message
    assert core_v1.read_namespaced_pod("too-big", namespace).spec.node_name is None


def test_a_token_without_rbac_is_forbidden(cluster, core_v1, namespace):
    core_v1.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    token = core_v1.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=600))).status.token

    admin = cluster.api.configuration
    config = client.Configuration(host=admin.host, api_key={"authorization": f"Bearer {token}"})
    config.ssl_ca_cert, config.verify_ssl = admin.ssl_ca_cert, admin.verify_ssl
    with client.ApiClient(config) as api, pytest.raises(ApiException) as denied:
        client.CoreV1Api(api).list_node()

    assert denied.value.status == 403  # authenticated (not 401) but not authorised
    assert f"system:serviceaccount:{namespace}:nobody" in denied.value.body


def _gpu_template(app: str, gpus: int, node_selector: dict[str, str] | None, restart: str = "Always") -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"nodeSelector": node_selector, "restartPolicy": restart,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}


def _pods(core_v1, namespace: str, selector: str) -> list[client.V1Pod]:
    return [p for p in core_v1.list_namespaced_pod(namespace, label_selector=selector).items
            if p.metadata.deletion_timestamp is None]


def test_deployment_pods_are_bound_to_distinct_gpu_nodes(cluster, core_v1, namespace, wait_for):
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "h100x2"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "h100x2"}},
                 "template": _gpu_template("h100x2", 8, {"node.kubernetes.io/instance-type": H100})}})

    def bound():
        nodes = [p.spec.node_name for p in _pods(core_v1, namespace, "app=h100x2") if p.spec.node_name]
        return nodes if len(nodes) == 2 else None
    nodes = wait_for(bound, 30, "2 pods of deployment h100x2 bound")

    assert len(set(nodes)) == 2  # 8 GPUs each: one pod per 8-GPU node
    for name in nodes:
        assert core_v1.read_node(name).metadata.labels["node.kubernetes.io/instance-type"] == H100
    if cluster.local:  # the pod simulator stands in for kubelets: the rollout completes
        wait_for(lambda: apps.read_namespaced_deployment("h100x2", namespace).status.available_replicas == 2,
                 30, "deployment h100x2 available")


def test_a_changed_template_rolls_out(cluster, core_v1, namespace, wait_for):
    """What the operator does to a target: patch its pod template, then a new ReplicaSet replaces the pods."""
    if not cluster.local:
        pytest.skip("needs the pod simulator: kind's pause containers may not pull here")
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "roll"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "roll"}},
                 "template": _gpu_template("roll", 1, None)}})
    wait_for(lambda: apps.read_namespaced_deployment("roll", namespace).status.ready_replicas == 2, 30, "roll ready")

    apps.patch_namespaced_deployment("roll", namespace, {"spec": {"template": _gpu_template(
        "roll", 8, {"node.kubernetes.io/instance-type": H100})}})

    def rolled():
        d = apps.read_namespaced_deployment("roll", namespace)
        pods = core_v1.list_namespaced_pod(namespace, label_selector="app=roll").items
        done = (d.status.observed_generation == d.metadata.generation and d.status.updated_replicas == 2
                and d.status.available_replicas == 2 and len(pods) == 2)
        return pods if done else None
    pods = wait_for(rolled, 60, "the rollout of roll to finish and the old pods to go")
    types = {core_v1.read_node(p.spec.node_name).metadata.labels["node.kubernetes.io/instance-type"] for p in pods}
    assert types == {H100}


def test_suspended_job_creates_pods_only_once_resumed(cluster, core_v1, namespace, wait_for):
    batch = client.BatchV1Api(cluster.api)
    batch.create_namespaced_job(namespace, {
        "metadata": {"name": "train"},
        "spec": {"suspend": True, "backoffLimit": 0,
                 "template": _gpu_template("train", 8, {"node.kubernetes.io/instance-type": H100}, "Never")}})
    # the job controller reports a suspended Job with a condition: once it is there, it has decided
    wait_for(lambda: any(c.type == "Suspended" and c.status == "True"
                         for c in batch.read_namespaced_job("train", namespace).status.conditions or []),
             30, "the job controller to mark job train Suspended")
    assert core_v1.list_namespaced_pod(namespace, label_selector="job-name=train").items == []

    batch.patch_namespaced_job("train", namespace, {"spec": {"suspend": False}})

    pod = wait_for(lambda: next((p for p in _pods(core_v1, namespace, "job-name=train") if p.spec.node_name), None),
                   30, "the pod of job train bound")
    assert core_v1.read_node(pod.spec.node_name).metadata.labels["node.kubernetes.io/instance-type"] == H100


def test_deleted_namespace_goes_away(cluster, core_v1, wait_for):
    name = f"e2e-ns-delete-{secrets.token_hex(3)}"
    core_v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for(lambda: core_v1.read_namespaced_service_account("default", name), 30, "the default ServiceAccount")
    core_v1.create_namespaced_pod(name, _gpu_pod("p", 1))
    wait_for(lambda: core_v1.read_namespaced_pod("p", name).spec.node_name, 30, "pod p bound")

    core_v1.delete_namespace(name)  # graceful: the pod simulator finalises the bound pod, as a kubelet would

    def gone():
        try:
            core_v1.read_namespace(name)
        except ApiException as e:
            return e.status == 404
        return False
    wait_for(gone, 60, f"namespace {name} to be deleted")


# node-monitor-grace-period is 50 s in v1.34: past it, a node-lifecycle controller would mark the
# heartbeat-less simulated nodes NotReady, taint them and (with taint-eviction) evict their pods.
_PAST_NODE_GRACE = 70.0


def test_simulated_nodes_stay_schedulable_and_keep_their_pods(cluster, core_v1, namespace, wait_for):
    """Runs last in this module; it waits until the control plane is 70 s old, which earlier tests mostly cover."""
    if not cluster.local:
        pytest.skip("a real cluster's nodes have kubelets")
    core_v1.create_namespaced_pod(namespace, _gpu_pod("stays", 8, {"node.kubernetes.io/instance-type": H100}))
    pod = wait_for(lambda: (p := core_v1.read_namespaced_pod("stays", namespace)).spec.node_name and p,
                   30, "pod stays bound")

    wait_for(lambda: time.monotonic() - cluster.started >= _PAST_NODE_GRACE, _PAST_NODE_GRACE + 5,
             f"the control plane to be {_PAST_NODE_GRACE:g} s old")

    nodes = core_v1.list_node(label_selector=f"{SIMULATED_LABEL}=true").items
    assert nodes
    for node in nodes:
        assert not node.spec.taints, (node.metadata.name, node.spec.taints)
        assert not node.spec.unschedulable
        assert _node_ready(node) == "True", node.metadata.name
    after = core_v1.read_namespaced_pod("stays", namespace)
    assert after.metadata.uid == pod.metadata.uid and after.metadata.deletion_timestamp is None
    assert after.spec.node_name == pod.spec.node_name and after.status.phase == "Running"


def _node_ready(node: client.V1Node) -> str | None:
    return next((c.status for c in node.status.conditions or [] if c.type == "Ready"), None)
