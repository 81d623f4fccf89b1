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
