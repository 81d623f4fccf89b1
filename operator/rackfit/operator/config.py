"""Operator settings, from environment variables (the chart sets them; defaults suit `make dev-up`).

Each setting is written once, as a field of `OperatorConfig`: its default, its variable and what it does.
`from_env` reads the variables over those defaults, and `environment_help()` is the `rackfit operator
--help` text made from the same fields.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from rackfit.catalog import Catalog, load_catalog
from rackfit.names import GPU_NODE_SELECTOR

WEBHOOK_MODES = ("off", "url", "service")
SWITCHES = ("auto", "on", "off")  # auto: on where the API server serves the resource it needs


def _setting(env: str, default: Any = None, *, factory: Any = None, help: str = "") -> Any:
    meta = {"env": env, "help": help}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


@dataclass(frozen=True)
class OperatorConfig:
    catalog_file: Path | None = _setting("RACKFIT_CATALOG", help="YAML file merged over the built-in catalog")
    tolerations: list[dict[str, Any]] = _setting("RACKFIT_TOLERATIONS", factory=list,
                                                 help="JSON list of tolerations added to the pods it places")
    metrics_port: int = _setting("RACKFIT_METRICS_PORT", 9090, help="0 turns the metrics server off")
    prometheus_url: str = _setting("RACKFIT_PROMETHEUS_URL", "", help=(
        "Prometheus to read what workloads really use (status.observed, EstimateHolds; docs/observed.md); "
        '"" turns it off (--prometheus-url)'))
    observed_seconds: float = _setting("RACKFIT_OBSERVED_SECONDS", 60.0, help=(
        "how often the one batched Prometheus query for all workloads runs"))
    observed_window: str = _setting("RACKFIT_OBSERVED_WINDOW", "1h", help=(
        "the window of the peak framebuffer use (PromQL duration)"))
    prometheus_timeout: float = _setting("RACKFIT_PROMETHEUS_TIMEOUT", 5.0, help="seconds a query may take")
    replan_seconds: float = _setting("RACKFIT_REPLAN_SECONDS", 15.0, help="how often fleet changes are checked")
    webhooks: str = _setting("RACKFIT_WEBHOOKS", "off", help=(
        "off | url (registered at https://HOST:PORT, as on the local control plane) | service (the chart's)"))
    webhook_host: str = _setting("RACKFIT_WEBHOOK_HOST", "127.0.0.1", help="url mode")
    webhook_port: int = _setting("RACKFIT_WEBHOOK_PORT", 9443)
    webhook_cert_dir: Path | None = _setting("RACKFIT_WEBHOOK_CERT_DIR",
                                             help="tls.crt, tls.key (+ ca.crt); else generated")
    node_selector: str = _setting("RACKFIT_NODE_SELECTOR", GPU_NODE_SELECTOR,
                                  help='label selector of the GPU nodes to watch ("" watches every node)')
    compute_domains: str = _setting("RACKFIT_COMPUTE_DOMAINS", "auto", help=(
        "auto | on | off: a ComputeDomain (NVIDIA's DRA driver) for each placement across nodes of one NVL72 "
        "rack; auto: where the API server serves the CRD"))
    kueue: str = _setting("RACKFIT_KUEUE", "auto", help=(
        "auto | on | off: rackfit answers Kueue's admission checks of controllerName rackfit.io/fit and leaves "
        "targets with kueue.x-k8s.io/queue-name to Kueue; auto: where the API server serves AdmissionChecks"))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        default = cls()
        tolerations = json.loads(env.get("RACKFIT_TOLERATIONS") or "[]")
        if not isinstance(tolerations, list):
            raise ValueError("RACKFIT_TOLERATIONS must be a JSON list of tolerations")
        webhooks = env.get("RACKFIT_WEBHOOKS", default.webhooks)
        if webhooks not in WEBHOOK_MODES:
            raise ValueError(f"RACKFIT_WEBHOOKS={webhooks!r}; allowed: {', '.join(WEBHOOK_MODES)}")
        cert_dir = env.get("RACKFIT_WEBHOOK_CERT_DIR")
        switches = {}
        for name, var in (("compute_domains", "RACKFIT_COMPUTE_DOMAINS"), ("kueue", "RACKFIT_KUEUE")):
            switches[name] = env.get(var, getattr(default, name))
            if switches[name] not in SWITCHES:
                raise ValueError(f"{var}={switches[name]!r}; allowed: {', '.join(SWITCHES)}")
        return cls(catalog_file=Path(env["RACKFIT_CATALOG"]) if env.get("RACKFIT_CATALOG") else None,
                   tolerations=tolerations,
                   metrics_port=int(env.get("RACKFIT_METRICS_PORT", default.metrics_port)),
                   prometheus_url=env.get("RACKFIT_PROMETHEUS_URL", default.prometheus_url),
                   observed_seconds=float(env.get("RACKFIT_OBSERVED_SECONDS", default.observed_seconds)),
                   observed_window=env.get("RACKFIT_OBSERVED_WINDOW", default.observed_window),
                   prometheus_timeout=float(env.get("RACKFIT_PROMETHEUS_TIMEOUT", default.prometheus_timeout)),
                   replan_seconds=float(env.get("RACKFIT_REPLAN_SECONDS", default.replan_seconds)),
                   webhooks=webhooks, webhook_host=env.get("RACKFIT_WEBHOOK_HOST", default.webhook_host),
                   webhook_port=int(env.get("RACKFIT_WEBHOOK_PORT", default.webhook_port)),
                   webhook_cert_dir=Path(cert_dir) if cert_dir else None,
                   node_selector=env.get("RACKFIT_NODE_SELECTOR", default.node_selector),
                   **switches)

    def catalog(self) -> Catalog:
        return load_catalog(self.catalog_file.read_text() if self.catalog_file else None)


def setting_help(name: str) -> str:
    """One field's help, for a command-line flag that sets the same variable."""
    f = next(f for f in fields(OperatorConfig) if f.name == name)
    return f"{f.metadata['help']} (env {f.metadata['env']})"


def environment_help() -> str:
    """One line per variable: its name, default and meaning, from the fields above."""
    lines = ["environment:"]
    for f in fields(OperatorConfig):
        default = f.default_factory() if f.default is MISSING else f.default
        shown = [f"default {json.dumps(default) if isinstance(default, list | str) else default}"] \
            if default is not None else []
        text = "; ".join([*shown, *([f.metadata["help"]] if f.metadata["help"] else [])])
        lines.append(f"  {f.metadata['env']}" + (f": {text}" if text else ""))
    return "\n".join(lines)
