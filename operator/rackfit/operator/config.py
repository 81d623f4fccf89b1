"""Operator settings, from environment variables (the chart sets them; defaults suit `make dev-up`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rackfit.catalog import Catalog, load_catalog


@dataclass(frozen=True)
class OperatorConfig:
    catalog_file: Path | None = None        # RACKFIT_CATALOG: YAML merged over the built-in catalog
    tolerations: list[dict[str, Any]] = field(default_factory=list)  # RACKFIT_TOLERATIONS (JSON list)
    metrics_port: int = 9090                 # RACKFIT_METRICS_PORT; 0 turns the server off
    replan_seconds: float = 15.0             # RACKFIT_REPLAN_SECONDS: how often fleet changes are checked

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        tolerations = json.loads(env.get("RACKFIT_TOLERATIONS") or "[]")
        if not isinstance(tolerations, list):
            raise ValueError("RACKFIT_TOLERATIONS must be a JSON list of tolerations")
        return cls(catalog_file=Path(env["RACKFIT_CATALOG"]) if env.get("RACKFIT_CATALOG") else None,
                   tolerations=tolerations,
                   metrics_port=int(env.get("RACKFIT_METRICS_PORT", "9090")),
                   replan_seconds=float(env.get("RACKFIT_REPLAN_SECONDS", "15")))

    def catalog(self) -> Catalog:
        return load_catalog(self.catalog_file.read_text() if self.catalog_file else None)
