"""`label_nodes` (what `make kind-up` runs) turns plain nodes into fleet nodes the scheduler can use.

kind itself needs a container engine, so this runs the same code on bare Node objects of the
local control plane and removes them afterwards.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from devcluster.fleet import label_nodes


@pytest.fixture
def bare_nodes(cluster, core_v1):
    if not cluster.local:
        pytest.skip("adds and deletes Node objects; only on the local control plane")
    names = ["kind-worker-a", "kind-worker-b"]
    for name in names:
        core_v1.create_node(client.V1Node(metadata=client.V1ObjectMeta(
            name=name, labels={"kubernetes.io/hostname": name})))
    yield names
    for name in names:
        core_v1.delete_node(name)


def test_label_nodes_copies_fleet_labels_and_gpu_capacity(core_v1, bare_nodes):
    mapping = label_nodes(core_v1, bare_nodes, {"gd-8xh200ib-i128": 2})

    assert mapping == {"kind-worker-a": "gd-8xh200ib-i128-000", "kind-worker-b": "gd-8xh200ib-i128-001"}
    for name in bare_nodes:
        node = core_v1.read_node(name)
        assert node.metadata.labels["kubernetes.io/hostname"] == name  # the kubelet's, kept
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H200"
        assert node.status.allocatable["nvidia.com/gpu"] == "8"


def test_label_nodes_refuses_a_fleet_larger_than_the_cluster(core_v1, bare_nodes):
    with pytest.raises(ValueError, match="3 nodes but the cluster only 2"):
        label_nodes(core_v1, bare_nodes, {"gd-8xh200ib-i128": 3})
