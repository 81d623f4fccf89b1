"""The Helm chart (charts/rackfit) rendered by `helm template` (no cluster): generated parts current,
RBAC exactly rackfit.operator.rbac.RULES, the CRD copy equal to crds/, the Deployment's contract with
the operator (args, env, probes, security), webhooks and their certificates, catalog override
semantics, monitoring gating, the dashboard, values documented and schema-checked.

Rendering needs the helm built by `make k8s-bin`: those tests skip with the reason when it is
missing, and fail under $CI. The generated-files and values tests need no helm.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from rackfit.catalog import builtin_catalog_text, load_catalog
from rackfit.operator import chartgen
from rackfit.operator.rbac import RULES
from tooling import built_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rackfit"
CRD = ROOT / "crds" / "rackfit.io_llmworkloads.yaml"
# a catalog entry added through values: an 8 x H100 node type of the user's own
MY_H100 = tuple(f"catalog.override.instanceTypes.my-h100.{k}" for k in (
    "gpu.model=H100", "gpu.product=NVIDIA-H100-80GB-HBM3", "gpu.memoryGB=80", "gpu.memoryMiB=81559",
    "gpu.architecture=hopper", "gpusPerNode=8", "nvlinkDomainGPUs=8"))
MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")


@cache
def _render(sets: tuple[str, ...], api_versions: tuple[str, ...]) -> tuple[dict, ...]:
    args = [built_tool("helm"), "template", "rackfit", str(CHART), "-n", "rackfit"]
    for s in sets:
        args += ["--set", s]
    for a in api_versions:
        args += ["--api-versions", a]
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(*sets: str, api_versions: tuple[str, ...] = ()) -> list[dict]:
    return list(_render(tuple(sets), tuple(api_versions)))


def kinds(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def one(docs: list[dict], kind: str) -> dict:
    (doc,) = kinds(docs)[kind]
    return doc


def container(docs: list[dict]) -> dict:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env(docs: list[dict]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container(docs)["env"]}


# --- generated parts (no helm) ---------------------------------------------------------------------

def test_generated_files_are_current():
    """`make chart` output is committed: RBAC rules, the CRD copy and the catalog copy match their sources."""
    assert chartgen.stale() == [], "run `make chart` (python -m rackfit.operator.chartgen)"
    assert chartgen.main(["--check"]) == 0


def test_chartgen_check_notices_drift(tmp_path):
    assert chartgen.main(["--root", str(tmp_path)]) == 0
    assert chartgen.main(["--root", str(tmp_path), "--check"]) == 0
    rules = tmp_path / chartgen.CHART / "templates" / "_rbac-rules.tpl"
    rules.write_text(rules.read_text().replace('"patch"', '"delete"', 1))
    assert chartgen.stale(tmp_path) == [chartgen.CHART / "templates" / "_rbac-rules.tpl"]
    assert chartgen.main(["--root", str(tmp_path), "--check"]) == 1


def test_crd_template_is_the_crd_gated_and_kept():
    """No helm: with both switches on, the chart's CRD template is crdgen's CRD plus the keep annotation."""
    from rackfit.api import crdgen
    chart = chartgen.crd_template()
    assert chart.startswith("{{- if .Values.crds.enabled }}\n") and chart.rstrip().endswith("{{- end }}")
    assert "{{- if .Values.crds.keep }}" in chart and "helm.sh/resource-policy: keep" in chart
    rendered = "\n".join(line for line in chart.splitlines() if "{{" not in line)
    doc = yaml.safe_load(rendered)
    assert doc["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert doc["spec"] == crdgen.crd()["spec"]


def test_catalog_copy_is_the_builtin_catalog():
    assert (CHART / "files" / "instances.yaml").read_text() == builtin_catalog_text()


# --- values (no helm) ------------------------------------------------------------------------------

def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def _keys(values: dict, schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the chart's own keys: free-form maps (labels, resources, affinity, the catalog's
    instance types) are one value each, their contents are the user's."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        out.append(path)
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            out += _keys(value, sub, path + ".")
    return out


def test_every_value_is_documented():
    """Each key in values.yaml has a comment on the lines just above it (cert-manager's habit), but
    for sections, which hold documented keys."""
    keys = set(_keys(yaml.safe_load((CHART / "values.yaml").read_text()), _schema()))
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z_][\w-]*):(\s|$)", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [m.group(2)])
        stack.append((indent, m.group(2)))
        if path not in keys:
            continue  # inside a free-form map's default
        section = any(k.startswith(path + ".") for k in keys)
        if not section and not lines[i - 1].strip().startswith("#"):
            undocumented.append(path)
    assert not undocumented, f"values without a comment: {undocumented}"


def test_values_match_the_schema_and_typos_are_rejected():
    schema = _schema()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    for bad in ({**values, "replicas": 2},
                {**values, "operator": {**values["operator"], "replica": 3}},
                {**values, "monitoring": {**values["monitoring"], "serviceMonitor": {"enabled": "maybe"}}},
                {**values, "webhooks": {**values["webhooks"], "timeoutSeconds": 60}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def _schema_objects(schema: dict, path: str = "") -> list[tuple[str, dict]]:
    out = []
    if schema.get("type") == "object" and "properties" in schema:
        out.append((path, schema))
        for key, sub in schema["properties"].items():
            out += _schema_objects(sub, f"{path}.{key}")
    return out


def test_schema_closes_every_level_and_covers_every_value():
    schema = _schema()
    for path, node in _schema_objects(schema):
        assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = _keys(values, schema)
    assert "monitoring.prometheusRule.rules.operatorDown.severity" in keys and "operator.resources.requests" in keys
    for key in keys:
        node = schema
        for part in key.split("."):
            assert part in node.get("properties", {}), f"{key} is not in values.schema.json"
            node = node["properties"][part]


# --- rendered chart --------------------------------------------------------------------------------

def test_helm_lint():
    out = subprocess.run([built_tool("helm"), "lint", str(CHART), "--strict"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_default_render():
    docs = render()
    assert sorted(kinds(docs)) == sorted([
        "ServiceAccount", "Secret", "ConfigMap", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
        "Service", "Deployment", "ClusterKopfPeering", "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration", "Job", "PodDisruptionBudget"])
    assert len(kinds(docs)["ConfigMap"]) == 2  # catalog, dashboard
    # the uninstall hook (release of kopf's finalizers), and nothing else, is a Helm hook
    hooks = [d for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]
    assert [(d["kind"], d["metadata"]["annotations"]["helm.sh/hook"]) for d in hooks] == [("Job", "pre-delete")]
    assert "Job" not in kinds(render("uninstall.releaseWorkloads=false"))


def test_cluster_role_is_exactly_the_operator_rules():
    docs = render()
    role = one(docs, "ClusterRole")
    assert [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]] == [tuple(r) for r in RULES]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "rackfit"}]
    pod_spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == sa["metadata"]["name"] == "rackfit"


def test_crd_is_the_generated_one_once_and_kept():
    """The chart's CRD is rackfit.api.crdgen's, as in crds/ (whose own freshness `make crds-check` checks)."""
    from rackfit.api import crdgen
    source = crdgen.crd()
    if CRD.exists():
        assert yaml.safe_load(CRD.read_text())["spec"] == source["spec"], "crds/ is stale: run `make crds`"
    crds = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    assert [c["metadata"]["name"] for c in crds] == [source["metadata"]["name"]]  # exactly one copy in the chart
    (crd,) = crds
    assert crd["spec"] == source["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "annotations" not in one(render("crds.keep=false"), "CustomResourceDefinition")["metadata"]
    assert "CustomResourceDefinition" not in kinds(render("crds.enabled=false"))


def test_peering_crd_and_object():
    peering_crd = yaml.safe_load((CHART / "crds" / "clusterkopfpeerings.kopf.dev.yaml").read_text())
    assert peering_crd["spec"]["group"] == "kopf.dev" and peering_crd["spec"]["scope"] == "Cluster"
    assert peering_crd["spec"]["names"]["plural"] == "clusterkopfpeerings"
    (version,) = peering_crd["spec"]["versions"]
    assert version["name"] == "v1" and version["storage"]
    assert version["schema"]["openAPIV3Schema"]["properties"]["status"]["x-kubernetes-preserve-unknown-fields"]
    assert one(render(), "ClusterKopfPeering")["metadata"]["name"] == "rackfit"
    docs = render("operator.peering=gpu-team")
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "gpu-team"
    assert container(docs)["args"][:3] == ["operator", "--peering", "gpu-team"]


def test_deployment_contract_with_the_operator():
    docs = render()
    dep = one(docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    c = container(docs)
    assert c["image"] == "rackfit:0.1.0"
    assert c["args"] == ["operator", "--peering", "rackfit", "--liveness", "http://0.0.0.0:8080/healthz"]
    e = env(docs)
    assert e["RACKFIT_METRICS_PORT"] == "9090" and e["RACKFIT_CATALOG"] == "/etc/rackfit/catalog.yaml"
    assert e["RACKFIT_TOLERATIONS"] == "[]" and e["RACKFIT_WEBHOOKS"] == "service"
    assert e["RACKFIT_WEBHOOK_PORT"] == "9443" and e["RACKFIT_WEBHOOK_CERT_DIR"] == "/certs"
    from rackfit.operator.config import OperatorConfig
    config = OperatorConfig.from_env({k: v for k, v in e.items() if v is not None})
    assert (config.metrics_port, config.webhooks, config.webhook_port) == (9090, "service", 9443)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # ready once the webhooks are served; kept serving 5 s after a rollout marks it terminating
    assert c["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    off = container(render("webhooks.enabled=false"))
    assert off["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 8080, "metrics": 9090, "webhook": 9443}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"catalog": "/etc/rackfit", "tmp": "/tmp", "webhook-certs": "/certs"}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
    assert volumes["catalog"]["configMap"]["name"] == "rackfit-catalog"
    assert volumes["webhook-certs"]["secret"]["secretName"] == one(docs, "Secret")["metadata"]["name"]


def test_placement_tolerations_reach_the_operator_as_json():
    tol = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    docs = render(f"placementTolerations[0].key={tol[0]['key']}", "placementTolerations[0].operator=Exists",
                  "placementTolerations[0].effect=NoSchedule")
    assert json.loads(env(docs)["RACKFIT_TOLERATIONS"]) == tol
    from rackfit.operator.config import OperatorConfig
    assert OperatorConfig.from_env({"RACKFIT_TOLERATIONS": env(docs)["RACKFIT_TOLERATIONS"]}).tolerations == tol


def test_image_runs_as_the_chart_s_user():
    """The Dockerfile's USER, entrypoint and command are what the Deployment assumes."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["rackfit"\]$', text, re.M) and re.search(r'^CMD \["operator"\]$', text, re.M)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\} AS build$", text, re.M) and "--no-index --find-links" in text
    assert '[operator]' in text
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsGroup"] == 65532
    assert container(render())["args"][0] == "operator"


def test_catalog_configmap_merges_like_load_catalog():
    cm = next(d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rackfit-catalog")
    assert cm["data"]["instances.yaml"].strip() == builtin_catalog_text().strip()
    assert load_catalog(cm["data"]["catalog.yaml"]) == load_catalog()
    docs = render("catalog.override.instanceTypes.gd-8xh100ib-i128.pricePerHour=49.24",
                  *MY_H100)
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rackfit-catalog")
    catalog = load_catalog(cm["data"]["catalog.yaml"])
    assert catalog.get("gd-8xh100ib-i128").price_per_hour == pytest.approx(49.24)
    assert catalog.get("my-h100").gpus_per_node == 8
    assert set(catalog.names()) == set(load_catalog().names()) | {"my-h100"}
    dep = one(docs, "Deployment")
    assert dep["spec"]["template"]["metadata"]["annotations"]["checksum/catalog"] != \
        one(render(), "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/catalog"]
    replaced = render("catalog.override.replace=true", *MY_H100)
    cm = next(d for d in replaced if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rackfit-catalog")
    assert load_catalog(cm["data"]["catalog.yaml"]).names() == ["my-h100"]


def _webhooks(docs):
    return one(docs, "ValidatingWebhookConfiguration")["webhooks"][0], \
        one(docs, "MutatingWebhookConfiguration")["webhooks"][0]


def test_webhook_configurations():
    docs = render()
    v, m = _webhooks(docs)
    assert v["clientConfig"]["service"] == {"name": "rackfit", "namespace": "rackfit", "path": "/validate-llmworkload",
                                            "port": 443}
    assert v["rules"] == [{"apiGroups": ["rackfit.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"],
                           "resources": ["llmworkloads"], "scope": "Namespaced"}]
    assert (v["failurePolicy"], v["sideEffects"], v["admissionReviewVersions"], v["timeoutSeconds"]) == \
        ("Fail", "None", ["v1"], 10)
    assert m["clientConfig"]["service"]["path"] == "/mutate-pod"
    assert m["rules"][0]["resources"] == ["pods"] and m["rules"][0]["operations"] == ["CREATE"]
    assert m["objectSelector"] == {"matchExpressions": [{"key": "rackfit.io/workload", "operator": "Exists"}]}
    # fail closed for labelled pods only: the objectSelector keeps every other pod away from it
    assert (m["failurePolicy"], m["reinvocationPolicy"], m["sideEffects"]) == ("Fail", "Never", "None")
    assert _webhooks(render("webhooks.timeoutSeconds=5"))[0]["timeoutSeconds"] == 5
    svc = one(docs, "Service")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == \
        {"webhook": (443, "webhook"), "metrics": (9090, "metrics")}


def test_a_kueue_leaderworkerset_s_webhook_only_where_kueue_is():
    assert len(one(render(), "MutatingWebhookConfiguration")["webhooks"]) == 1  # auto, no Kueue: none
    for docs in (render("kueue.enabled=true"), render(api_versions=("kueue.x-k8s.io/v1beta2/AdmissionCheck",))):
        _, lws = one(docs, "MutatingWebhookConfiguration")["webhooks"]
        assert lws["clientConfig"]["service"]["path"] == "/mutate-kueue-target"  # kopf serves /<handler id>
        assert lws["rules"][0]["resources"] == ["leaderworkersets"] and lws["rules"][0]["operations"] == ["CREATE"]
        assert lws["objectSelector"] == {"matchExpressions": [{"key": "kueue.x-k8s.io/queue-name",
                                                                "operator": "Exists"}]}
        assert lws["failurePolicy"] == "Ignore"


def test_a_disruption_budget_keeps_a_webhook_server_while_there_are_replicas_to_spare():
    pdb = one(render(), "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert not [d for d in render("operator.replicas=1") if d["kind"] == "PodDisruptionBudget"]


def test_generated_certificate_serves_the_service_and_matches_the_ca_bundle():
    from cryptography import x509
    docs = render()
    secret = one(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    for hook in _webhooks(docs):
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "rackfit.rackfit.svc" in names and "rackfit.rackfit.svc.cluster.local" in names


def test_cert_manager_variant():
    docs = render("certManager.enabled=true", api_versions=("cert-manager.io/v1/Certificate",))
    k = kinds(docs)
    assert "Secret" not in k and {"Issuer", "Certificate"} <= set(k)
    cert = one(docs, "Certificate")
    assert cert["spec"]["issuerRef"]["name"] == one(docs, "Issuer")["metadata"]["name"]
    assert "rackfit.rackfit.svc" in cert["spec"]["dnsNames"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-certs"]["secret"]["secretName"] == cert["spec"]["secretName"]
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config = one(docs, kind)
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "rackfit/rackfit-webhook"
        assert "caBundle" not in config["webhooks"][0]["clientConfig"]


def test_webhooks_off():
    docs = render("webhooks.enabled=false")
    k = kinds(docs)
    assert not {"Secret", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "Certificate"} & set(k)
    assert env(docs)["RACKFIT_WEBHOOKS"] == "off" and "RACKFIT_WEBHOOK_CERT_DIR" not in env(docs)
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["metrics"]


@pytest.mark.parametrize("setting, api, expected", [
    ("auto", False, False), ("auto", True, True), ("true", False, True), ("false", True, False)])
def test_monitoring_is_rendered_when_the_api_is_served_or_forced(setting, api, expected):
    docs = render(f"monitoring.serviceMonitor.enabled={setting}", f"monitoring.prometheusRule.enabled={setting}",
                  api_versions=MONITORING if api else ())
    k = kinds(docs)
    assert ("ServiceMonitor" in k, "PrometheusRule" in k) == (expected, expected)


def test_service_monitor_scrapes_the_metrics_port_keeping_workload_namespaces():
    docs = render(api_versions=MONITORING)
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["rackfit"]}


def test_dashboard():
    from prometheus_client.registry import CollectorRegistry

    from rackfit.operator.metrics import Metrics
    metrics = Metrics(CollectorRegistry())
    cm = next(d for d in render() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rackfit-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dash = json.loads(cm["data"]["rackfit.json"])
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dash["panels"]}
    assert any("rackfit_workload_memory_required_bytes" in e and "rackfit_workload_memory_capacity_bytes" in e
               for e in exprs.values())
    assert any("rackfit_workload_oversubscribed" in e for e in exprs.values())
    assert any("rackfit_domain_gpus_requested" in e and "rackfit_domain_gpus_allocatable" in e for e in exprs.values())
    exported = set()
    for collector in (metrics.memory_required, metrics.memory_capacity, metrics.oversubscribed, metrics.fits,
                      metrics.placed, metrics.domains,
                      metrics.reconcile_duration, metrics.reconcile_errors, metrics.pods, metrics.estimate_bytes,
                      metrics.estimate_kv_tokens, metrics.required_kv_tokens):
        exported |= {s.name for fam in collector.collect() for s in fam.samples} | \
            {fam.name for fam in collector.collect()}
    used = set(re.findall(r"rackfit_[a-z_]+", " ".join(exprs.values())))
    assert used <= exported, used - exported
    # recorded series the panels read are the chart's recording rules
    recorded = set(re.findall(r"rackfit:[a-z_:]+", " ".join(exprs.values())))
    rules = next(d for d in render("monitoring.prometheusRule.enabled=true") if d["kind"] == "PrometheusRule")
    assert recorded and recorded <= {r["record"] for g in rules["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert "ConfigMap" in kinds(render("monitoring.dashboard.enabled=false"))
    assert not any(d["metadata"]["name"] == "rackfit-dashboard" for d in render("monitoring.dashboard.enabled=false"))


def test_schema_rejects_a_typo_at_install():
    out = subprocess.run([built_tool("helm"), "template", "rackfit", str(CHART), "--set", "operator.replica=3"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "replica" in out.stderr
