"""The pod simulator's decisions (devcluster.podsim), without a cluster."""

from __future__ import annotations

from devcluster.podsim import action, running_status, terminated_status

NODES = {"gd-8xh100ib-i128-000"}


def _pod(node=None, phase="Pending", deleting=False, grace=None) -> dict:
    meta = {"name": "p", "namespace": "ns", "uid": "u1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        meta["deletionGracePeriodSeconds"] = grace
    return {"metadata": meta, "spec": {"nodeName": node, "containers": [{"name": "a", "image": "pause"}]},
            "status": {"phase": phase}}


def test_only_pods_bound_to_simulated_nodes_are_touched():
    assert action(_pod(), NODES) is None
    assert action(_pod("kind-worker"), NODES) is None
    assert action(_pod("gd-8xh100ib-i128-000"), NODES) == "run"
    assert action(_pod("gd-8xh100ib-i128-000", "Running"), NODES) is None


def test_deleted_pods_are_terminated_once():
    assert action(_pod("gd-8xh100ib-i128-000", "Running", deleting=True, grace=30), NODES) == "terminate"
    # killed and deleted with grace 0: only finalizers hold it now
    assert action(_pod("gd-8xh100ib-i128-000", "Failed", deleting=True, grace=0), NODES) is None


def test_running_status_makes_the_pod_ready():
    status = running_status(_pod("gd-8xh100ib-i128-000"), "2026-01-01T00:00:00Z")["status"]
    assert status["phase"] == "Running"
    assert {c["type"] for c in status["conditions"] if c["status"] == "True"} >= {"Ready", "ContainersReady"}
    assert [c["name"] for c in status["containerStatuses"] if c["ready"]] == ["a"]


def test_terminated_status_is_failed_and_not_ready():
    status = terminated_status(_pod("gd-8xh100ib-i128-000", "Running"), "2026-01-01T00:00:00Z")["status"]
    assert status["phase"] == "Failed"
    assert "terminated" in status["containerStatuses"][0]["state"]
