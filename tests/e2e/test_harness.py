"""The e2e harness is a real Kubernetes: version, CEL validation, scheduling on GPU nodes, RBAC.

If one of these fails, every other e2e result is suspect, so they check the harness itself
rather than rackfit.
"""

from __future__ import annotations

import textwrap

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rackfit.devcluster.binaries import K8S_VERSION

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
    core_v1.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
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
