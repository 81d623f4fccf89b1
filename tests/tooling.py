"""Helpers shared by tests that need the built upstream binaries (make k8s-bin): without them a
test skips with the reason, or fails under $CI, so a CI run can never pass by skipping."""

from __future__ import annotations

import os

import pytest

from devcluster import binaries


def unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def built_tool(name: str) -> str:
    """Path of a built binary such as helm or promtool."""
    path = binaries.bin_dir() / name
    if not os.access(path, os.X_OK):
        unavailable(f"no {name} in {binaries.bin_dir()}: {binaries.BUILD_HINT}")
    return str(path)


def placement(**fields):
    """A planner `Placement` for tests of the shell: a 2-node gb200-4x rack unless `fields` say
    otherwise (status spelling, e.g. gpusPerNode=8)."""
    from rackfit.planner import Placement
    base = {"instanceType": "gb200-4x", "gpusPerNode": 4, "nodes": 2, "totalGPUs": 8, "tensor": 8, "pipeline": 1,
            "data": 1, "expert": 1, "gpuMemoryBytes": 170 * 2**30, "nvlinkDomain": "nvidia.com/gpu.clique=u.1",
            "nodeSelector": {"node.kubernetes.io/instance-type": "gb200-4x", "nvidia.com/gpu.clique": "u.1"}}
    return Placement.model_validate({**base, **fields})
