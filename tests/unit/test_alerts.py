"""The chart's alerts under `promtool test rules`: the PrometheusRule is rendered by `helm template`
(the expressions live only in charts/rackfit/templates/_alert-rules.tpl), its spec becomes the rules
file, and tests/data/alerts/*.test.yaml feed it series (firing, pending and negative cases).

Needs the helm and promtool built by `make k8s-bin`: skipped with the reason when they are missing,
failed instead under $CI (a CI run must not pass by skipping).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tooling import built_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rackfit"
CASES = ROOT / "tests" / "data" / "alerts"
ALERTS = {"RackfitWorkloadOversubscribed": "workload_oversubscribed",
          "RackfitDomainOversubscribed": "domain_oversubscribed",
          "RackfitWorkloadUnplaceable": "workload_unplaceable", "RackfitOperatorDown": "operator_down",
          "RackfitObservedAboveEstimate": "observed_above_estimate",
          "RackfitObservedMissing": "observed_above_estimate"}
RULE_KEYS = {"RackfitWorkloadOversubscribed": "workloadOversubscribed",
             "RackfitDomainOversubscribed": "domainOversubscribed",
             "RackfitWorkloadUnplaceable": "workloadUnplaceable", "RackfitOperatorDown": "operatorDown",
             "RackfitObservedAboveEstimate": "observedAboveEstimate", "RackfitObservedMissing": "observedMissing"}


@pytest.fixture(scope="module")
def helm() -> str:
    return built_tool("helm")


@pytest.fixture(scope="module")
def promtool() -> str:
    return built_tool("promtool")


def rule_spec(helm: str, *sets: str) -> dict:
    """The PrometheusRule's spec as `helm template rackfit -n rackfit` renders it."""
    args = [helm, "template", "rackfit", str(CHART), "-n", "rackfit", "-s", "templates/prometheusrule.yaml",
            "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    (doc,) = [d for d in yaml.safe_load_all(out) if d]
    assert doc["kind"] == "PrometheusRule"
    return doc["spec"]


def _workdir(tmp_path: Path, spec: dict) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for case in CASES.glob("*.test.yaml"):
        shutil.copy(case, tmp_path / case.name)
    return tmp_path


def _alerts(spec: dict) -> dict[str, dict]:
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"] if "alert" in r}


def test_rendered_rules_pass_promtool_check(helm, promtool, tmp_path):
    work = _workdir(tmp_path, rule_spec(helm))
    out = subprocess.run([promtool, "check", "rules", "rules.yaml"], cwd=work, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 12 rules found" in out.stdout  # 7 alerts (RackfitObservedAboveEstimate twice), 5 records


@pytest.mark.parametrize("alert", sorted(ALERTS))
def test_alert_under_promtool(alert, helm, promtool, tmp_path):
    work = _workdir(tmp_path, rule_spec(helm))
    out = subprocess.run([promtool, "test", "rules", f"{ALERTS[alert]}.test.yaml"], cwd=work,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_silent_case(helm):
    """Each rendered alert has a test file that expects it to fire and expects silence somewhere."""
    assert set(_alerts(rule_spec(helm))) == set(ALERTS)
    for alert, stem in ALERTS.items():
        cases = [c for t in yaml.safe_load((CASES / f"{stem}.test.yaml").read_text())["tests"]
                 for c in t["alert_rule_test"] if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in cases), f"{alert}: no firing case"
        assert any(not c["exp_alerts"] for c in cases), f"{alert}: no negative case"


def test_tests_catch_a_wrong_for(helm, promtool, tmp_path):
    """The pending cases are real: with `for: 1m` the 4-minute 'still pending' checks must fail."""
    key = RULE_KEYS["RackfitWorkloadOversubscribed"]
    work = _workdir(tmp_path, rule_spec(helm, f"monitoring.prometheusRule.rules.{key}.for=1m"))
    out = subprocess.run([promtool, "test", "rules", "workload_oversubscribed.test.yaml"], cwd=work,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


def test_per_rule_values(helm):
    spec = rule_spec(helm, "monitoring.prometheusRule.rules.operatorDown.for=2m",
                     "monitoring.prometheusRule.rules.operatorDown.severity=page",
                     "monitoring.prometheusRule.rules.workloadUnplaceable.enabled=false",
                     "monitoring.prometheusRule.alertLabels.team=ml-platform")
    alerts = _alerts(spec)
    assert "RackfitWorkloadUnplaceable" not in alerts
    down = alerts["RackfitOperatorDown"]
    assert down["for"] == "2m" and down["labels"]["severity"] == "page"
    assert all(a["labels"]["team"] == "ml-platform" for a in alerts.values())
    defaults = _alerts(rule_spec(helm))
    assert {a: r["for"] for a, r in defaults.items()} == {
        "RackfitWorkloadOversubscribed": "5m", "RackfitDomainOversubscribed": "5m",
        "RackfitWorkloadUnplaceable": "15m", "RackfitOperatorDown": "5m", "RackfitObservedAboveEstimate": "5m",
        "RackfitObservedMissing": "30m"}


def test_operator_down_selects_the_service_monitor_job(helm):
    """absent() looks for the job Prometheus Operator gives the ServiceMonitor's targets: the Service name."""
    spec = rule_spec(helm, "fullnameOverride=gpu-planner")
    expr = _alerts(spec)["RackfitOperatorDown"]["expr"]
    assert expr.strip() == 'absent(up{job="gpu-planner", namespace="rackfit"} == 1)'


def test_alert_metrics_are_exported_by_the_operator(helm):
    import re

    from prometheus_client.registry import CollectorRegistry

    from rackfit.operator.metrics import Metrics
    metrics = Metrics(CollectorRegistry())
    exported = {f.name for m in (metrics.memory_required, metrics.memory_capacity, metrics.oversubscribed,
                                                 metrics.fits, metrics.placed, metrics.domains, metrics.pods,
                                                 metrics.estimate_bytes, metrics.estimate_kv_tokens,
                                                 metrics.required_kv_tokens, metrics.observed_kv_tokens)
                for f in m.describe()}
    rules = [r for g in rule_spec(helm)["groups"] for r in g["rules"]]
    used = {m for r in rules for m in re.findall(r"(?<![:\w])rackfit_[a-z_]+", r["expr"])}
    assert used and used <= exported, used - exported


def test_observed_window_and_the_engines_series(helm):
    """The recording rules take observed.window; they read the exporters' own names (docs/observed.md)."""
    spec = rule_spec(helm, "observed.window=10m")
    records = {r["record"]: r["expr"] for g in spec["groups"] for r in g["rules"] if "record" in r}
    assert "max_over_time(DCGM_FI_DEV_FB_USED[10m])" in records["rackfit:workload_observed_gpu_memory_bytes:max"]
    assert "sglang:max_total_num_tokens" in records["rackfit:workload_engine_kv_tokens:min"]
    assert "FB_TOTAL" not in str(spec)  # not in dcgm-exporter's default field set
