"""The API access the operator needs: the one list the Helm chart's ClusterRole and the RBAC tests use.

Each rule is (apiGroups, resources, verbs). Keep it to what the code calls.
"""

from __future__ import annotations

from rackfit.operator.targets import ADAPTERS

RULES: list[tuple[list[str], list[str], list[str]]] = [
    # the custom resource, its status, and kopf's progress annotations on it
    (["rackfit.io"], ["llmworkloads"], ["get", "list", "watch", "patch"]),
    (["rackfit.io"], ["llmworkloads/status"], ["get", "patch"]),
    # GPU inventory (informer.py lists and watches): nodes (labels, allocatable, cordon, Ready) and
    # the GPU requests of bound pods; pods labelled rackfit.io/workload are pinned to their domain
    # and ungated (patch); one made before its workload was placed, or one that escaped the gate, is
    # deleted so its controller makes it again
    ([""], ["nodes"], ["list", "watch"]),
    ([""], ["pods"], ["list", "watch", "patch", "delete"]),
    # the targets it places: each kind's own verbs (targets/registry.py)
    *(([k.group], [k.plural], list(k.verbs)) for k in ADAPTERS.values()),
    # a ComputeDomain (NVIDIA's DRA driver) per placement across nodes of one NVL72 rack: listed by the
    # workload's label, created, deleted when the placement moves (computedomains.py)
    (["resource.nvidia.com"], ["computedomains"], ["list", "create", "delete"]),
    # huggingFaceConfig read from a ConfigMap
    ([""], ["configmaps"], ["get"]),
    # Events recording each decision (kopf posts core/v1 and events.k8s.io)
    ([""], ["events"], ["create"]),
    (["events.k8s.io"], ["events"], ["create"]),
    # kopf: discovery of the CRD, and peering between replicas (one acts at a time)
    (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
    (["kopf.dev"], ["clusterkopfpeerings"], ["get", "list", "watch", "patch"]),
    ([""], ["namespaces"], ["get", "list", "watch"]),
]

# With Kueue (chart value kueue.enabled: on, or auto where the cluster serves Kueue's AdmissionChecks):
# rackfit answers the admission checks of controllerName rackfit.io/fit (kueue.py)
KUEUE_RULES: list[tuple[list[str], list[str], list[str]]] = [
    # its checks: watched, marked Active
    (["kueue.x-k8s.io"], ["admissionchecks"], ["get", "list", "watch"]),
    (["kueue.x-k8s.io"], ["admissionchecks/status"], ["get", "patch"]),
    # Kueue's Workloads: watched, their admission check states written
    (["kueue.x-k8s.io"], ["workloads"], ["get", "list", "watch"]),
    (["kueue.x-k8s.io"], ["workloads/status"], ["get", "patch"]),
    # the flavor Kueue assigned: its node labels give the instance type; its Topology, whether Kueue's TAS
    # can keep a job inside one NVL72 rack (a level on the clique label)
    (["kueue.x-k8s.io"], ["resourceflavors"], ["get"]),
    (["kueue.x-k8s.io"], ["topologies"], ["get", "list"]),
]
