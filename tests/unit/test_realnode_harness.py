"""The pure parts of the real-node harness (harness/devcluster/realnode.py, prometheus.py); tests/real
runs the rest for real."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from devcluster import realnode
from devcluster.prometheus import scrape_config
from tooling import built_tool

CHART = Path(__file__).resolve().parents[2] / "charts" / "rackfit"


def _service_monitor() -> dict:
    out = subprocess.run([built_tool("helm"), "template", "rel", str(CHART), "-n", "ops",
                          "--set", "monitoring.serviceMonitor.enabled=true",
                          "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"],
                         capture_output=True, text=True, check=True)
    return next(d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "ServiceMonitor")


def test_scrape_config_is_what_the_chart_s_service_monitor_selects(tmp_path):
    monitor = _service_monitor()
    config = scrape_config(monitor, "https://127.0.0.1:6443", tmp_path / "ca", tmp_path / "token")
    assert config["honor_labels"] is True  # the workload series keep their own namespace label
    (sd,) = config["kubernetes_sd_configs"]
    assert sd["role"] == "endpoints" and sd["namespaces"] == {"names": ["ops"]}
    keeps = {tuple(r["source_labels"]): r["regex"] for r in config["relabel_configs"] if r.get("action") == "keep"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert len(keeps) == len(selector) + 1
    assert keeps[("__meta_kubernetes_service_label_app_kubernetes_io_instance",)] == "rel"
    assert keeps[("__meta_kubernetes_endpoint_port_name",)] == "metrics"
    # job is the Service's name, as Prometheus Operator sets it: RackfitOperatorDown selects on it
    job = [r for r in config["relabel_configs"] if r.get("target_label") == "job"]
    assert job == [{"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"}]


def test_containerd_config_restricts_oom_score_adj_and_keeps_to_its_directory(tmp_path):
    text = realnode._containerd_config(tmp_path)
    assert "restrict_oom_score_adj = true" in text  # these VMs refuse a negative oom_score_adj
    assert f'address = "{tmp_path}/containerd.sock"' in text
    assert f'conf_dir = "{tmp_path}/cni/net.d"' in text and "/etc/cni" not in text
    assert f'sandbox_image = "{realnode.PAUSE_IMAGE}"' in text
