"""Operator settings, from environment variables (the chart sets them; defaults suit `make dev-up`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rackfit.catalog import Catalog, load_catalog
from rackfit.names import GPU_NODE_SELECTOR


@dataclass(frozen=True)
class OperatorConfig:
    catalog_file: Path | None = None        # RACKFIT_CATALOG: YAML merged over the built-in catalog
    tolerations: list[dict[str, Any]] = field(default_factory=list)  # RACKFIT_TOLERATIONS (JSON list)
    metrics_port: int = 9090                 # RACKFIT_METRICS_PORT; 0 turns the server off
    replan_seconds: float = 15.0             # RACKFIT_REPLAN_SECONDS: how often fleet changes are checked
    # RACKFIT_WEBHOOKS: off | url (the operator registers its webhooks at https://HOST:PORT, as on the
    # local control plane) | service (the chart's Service and webhook configurations point at it)
    webhooks: str = "off"
    webhook_host: str = "127.0.0.1"         # RACKFIT_WEBHOOK_HOST (url mode)
    webhook_port: int = 9443                 # RACKFIT_WEBHOOK_PORT
    webhook_cert_dir: Path | None = None     # RACKFIT_WEBHOOK_CERT_DIR: tls.crt, tls.key (+ ca.crt); else generated
    # RACKFIT_NODE_SELECTOR: label selector of the GPU nodes to watch ("" watches every node)
    node_selector: str = GPU_NODE_SELECTOR

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        tolerations = json.loads(env.get("RACKFIT_TOLERATIONS") or "[]")
        if not isinstance(tolerations, list):
            raise ValueError("RACKFIT_TOLERATIONS must be a JSON list of tolerations")
        webhooks = env.get("RACKFIT_WEBHOOKS", "off")
        if webhooks not in ("off", "url", "service"):
            raise ValueError(f"RACKFIT_WEBHOOKS={webhooks!r}; allowed: off, url, service")
        cert_dir = env.get("RACKFIT_WEBHOOK_CERT_DIR")
        return cls(catalog_file=Path(env["RACKFIT_CATALOG"]) if env.get("RACKFIT_CATALOG") else None,
                   tolerations=tolerations,
                   metrics_port=int(env.get("RACKFIT_METRICS_PORT", "9090")),
                   replan_seconds=float(env.get("RACKFIT_REPLAN_SECONDS", "15")),
                   webhooks=webhooks, webhook_host=env.get("RACKFIT_WEBHOOK_HOST", "127.0.0.1"),
                   webhook_port=int(env.get("RACKFIT_WEBHOOK_PORT", "9443")),
                   webhook_cert_dir=Path(cert_dir) if cert_dir else None,
                   node_selector=env.get("RACKFIT_NODE_SELECTOR", GPU_NODE_SELECTOR))

    def catalog(self) -> Catalog:
        return load_catalog(self.catalog_file.read_text() if self.catalog_file else None)
