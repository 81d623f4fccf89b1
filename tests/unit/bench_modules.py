"""The scripts under bench/ as modules, for the tests that check their rows and tables. They import each other by
bare name (accuracy, public_training), so bench/ goes on sys.path while one is imported."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench(name: str) -> ModuleType:
    """bench/<name>.py, imported once per test session (its cached rows with it)."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))
