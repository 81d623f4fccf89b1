"""`Prometheus`: the Prometheus server as a process beside a local `ControlPlane`, for tests/real.

The server is upstream Prometheus built from its Go module by tools/k8s/build.sh: Debian's
`prometheus` 2.42 is built without Kubernetes service discovery ("field kubernetes_sd_configs not
found in type config.ScrapeConfig"). Only the Kubernetes discovery is compiled in.

It discovers scrape targets with Kubernetes service discovery against the plane's API server (the
admin token), and scrapes what a Prometheus Operator would scrape for a ServiceMonitor: the
relabelling is derived from the ServiceMonitor object the chart renders (`scrape_config`), not
written by hand. Its rules are the `spec` of the chart's PrometheusRule. The process is a component
of the plane (stopped with it, log in logs/prometheus.log); its TSDB lives in the plane's data dir.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from devcluster import binaries
from devcluster.controlplane import ControlPlane
from devcluster.ports import free_port

INTERVAL = "2s"


class PrometheusUnavailable(RuntimeError):
    """No Prometheus server binary on this machine."""


def _label(name: str) -> str:
    """Prometheus's name for a Kubernetes label in service discovery meta labels."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def scrape_config(service_monitor: dict, api_server: str, ca_file: Path, token_file: Path) -> dict:
    """The scrape config a Prometheus Operator generates for `service_monitor` (one endpoint, role
    endpoints): keep the Services its selector matches in its namespaces and the endpoint port it
    names; job = Service name; namespace, service, pod, container and endpoint labels on each target."""
    meta, spec = service_monitor["metadata"], service_monitor["spec"]
    (endpoint,) = spec["endpoints"]
    match = spec["selector"]["matchLabels"]
    keep = [{"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{_label(k)}"],
             "regex": re.escape(v)} for k, v in sorted(match.items())]
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/0",
        "honor_labels": bool(endpoint.get("honorLabels")),
        "scrape_interval": INTERVAL,
        "metrics_path": endpoint.get("path", "/metrics"),
        "kubernetes_sd_configs": [{
            "role": "endpoints", "api_server": api_server,
            "namespaces": {"names": spec.get("namespaceSelector", {}).get("matchNames", [meta["namespace"]])},
            "tls_config": {"ca_file": str(ca_file)},
            "authorization": {"credentials_file": str(token_file)}}],
        "relabel_configs": [
            *keep,
            {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"],
             "regex": re.escape(endpoint["port"])},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
            {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
            {"target_label": "endpoint", "replacement": endpoint["port"]},
        ],
    }


class Prometheus:
    """`Prometheus(plane, service_monitor, prometheus_rule).start()`; `query()`, `alerts()`."""

    def __init__(self, plane: ControlPlane, service_monitor: dict, prometheus_rule: dict, *,
                 more_monitors: tuple[dict, ...] = (), host: str = "127.0.0.1"):
        """`more_monitors`: further ServiceMonitors to scrape (e.g. an exporter's); `host`: the address
        it listens on (the plane's node_ip, for the operator's pods to query it)."""
        self.binary = binaries.bin_dir() / "prometheus"
        if not os.access(self.binary, os.X_OK):
            raise PrometheusUnavailable(f"no prometheus in {binaries.bin_dir()}: {binaries.BUILD_HINT}")
        self.plane = plane
        self.dir = plane.data_dir / "prometheus"
        self.service_monitor, self.rules = service_monitor, prometheus_rule["spec"]
        self.more_monitors, self.host = tuple(more_monitors), host
        self.port = free_port()  # kept across stop() and start(): the same URL after a restart
        self.url = f"http://{host}:{self.port}"

    def start(self) -> Prometheus:
        self.dir.mkdir(parents=True, exist_ok=True)
        kubeconfig = yaml.safe_load(self.plane.kubeconfig.read_text())
        token = self.dir / "token"
        token.write_text(kubeconfig["users"][0]["user"]["token"])
        token.chmod(0o600)
        (self.dir / "rules.yaml").write_text(yaml.safe_dump(self.rules))
        (self.dir / "prometheus.yaml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": [str(self.dir / "rules.yaml")],
            "scrape_configs": [scrape_config(m, self.plane.server, self.plane.data_dir / "pki" / "ca.crt", token)
                               for m in (self.service_monitor, *self.more_monitors)],
        }, sort_keys=False))
        self.plane.add_process("prometheus", [
            self.binary, f"--config.file={self.dir / 'prometheus.yaml'}", f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}", "--storage.tsdb.retention.time=1h",
        ], self._ready)
        return self

    def stop(self) -> None:
        self.plane.stop_component("prometheus")

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
            return r.status == 200

    def _get(self, path: str, **params: str) -> dict:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """The instant vector `expr` evaluates to now (a list of {metric, value})."""
        data = self._get("/api/v1/query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [{"metric": {}, "value": data["result"]}]

    def alerts(self) -> list[dict]:
        """Active alerts (state pending or firing), from the alerts API."""
        return self._get("/api/v1/alerts")["alerts"]

    def firing(self, name: str) -> list[dict]:
        return [a for a in self.alerts() if a["labels"].get("alertname") == name and a["state"] == "firing"]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]
