"""Test-suite options shared by every test directory.

Tests under tests/e2e/ are marked `e2e` automatically and only run with `--e2e` (they need the
local control plane from tools/k8s/build.sh, or RACKFIT_E2E_KUBECONFIG); a plain `pytest` stays
fast and needs no cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_E2E_DIR = Path(__file__).parent / "e2e"
_REAL_DIR = Path(__file__).parent / "real"  # the chart on a real node (tests/real/conftest.py): e2e too


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", default=False,
                     help="also run the e2e tests against a real control plane (see docs/local-cluster.md)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="run with --e2e")
    run_e2e = config.getoption("--e2e")
    for item in items:
        if _E2E_DIR in item.path.parents or _REAL_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
        if not run_e2e and item.get_closest_marker("e2e"):
            item.add_marker(skip)
