"""The Helm chart on a real control plane: lint, every variant validated by the apiserver (dry run),
`helm install` into namespace rackfit, certificates stable across upgrades, and the operator run
locally with a token of the chart's ServiceAccount, placing a workload (its RBAC is enough) while
being refused what it does not need. Uninstall keeps the CRD.

The kinds of other projects' CRDs (ServiceMonitor, PrometheusRule, cert-manager's Issuer and
Certificate) are validated against stub CRDs from tests/data/crds/ that accept any spec: the
apiserver checks that each object is well formed and of a served kind, not the spec's fields (the
real CRDs are not in this tree). Installing the stubs also makes "auto" monitoring render for real.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from devcluster import binaries
from devcluster.waiting import wait_established

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rackfit"
STUBS = ROOT / "tests" / "data" / "crds"
NS = RELEASE = "rackfit"
MONITORING = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
              "--api-versions", "monitoring.coreos.com/v1/PrometheusRule"]
VARIANTS = {
    "defaults": [],
    "everything-on": [*MONITORING, "--api-versions", "cert-manager.io/v1/Certificate",
                      "--set", "certManager.enabled=true",
                      "--set", "monitoring.serviceMonitor.labels.release=kube-prometheus-stack",
                      "--set", "monitoring.prometheusRule.alertLabels.team=ml",
                      "--set", "placementTolerations[0].key=nvidia.com/gpu",
                      "--set", "placementTolerations[0].operator=Exists",
                      "--set", "catalog.override.instanceTypes.gd-8xh100ib-i128.pricePerHour=49.24",
                      "--set", "operator.verbose=true", "--set", "operator.priorityClassName=system-cluster-critical"],
    "webhooks-off-no-crds": ["--set", "webhooks.enabled=false", "--set", "crds.enabled=false",
                             "--set", "monitoring.dashboard.enabled=false"],
}


class Helm:
    def __init__(self, kubeconfig: Path, home: Path):
        self.path = str(binaries.bin_dir() / "helm")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def __call__(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        out = subprocess.run([self.path, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check:
            assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
        return out


@pytest.fixture(scope="module")
def helm(cluster, kubectl, tmp_path_factory) -> Iterator[Helm]:
    if not os.access(binaries.bin_dir() / "helm", os.X_OK):
        message = f"no helm in {binaries.bin_dir()}: {binaries.BUILD_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    h = Helm(cluster.kubeconfig, tmp_path_factory.mktemp("helm"))
    # the namespace (dry runs need it), kopf's peering CRD (the chart's crds/, which `helm template`
    # leaves out) and the stub CRDs of the monitoring and cert-manager kinds
    kubectl("create", "namespace", NS)
    for path in [*sorted((CHART / "crds").glob("*.yaml")), *sorted(STUBS.glob("*.yaml"))]:
        out = kubectl("apply", "--server-side", "-f", str(path))
        assert out.returncode == 0, out.stderr
    wait_established(kubectl, timeout=30)
    yield h
    h("uninstall", RELEASE, "-n", NS, "--wait", check=False)
    # The kept CRD's fields belong to helm now, and other modules' `kubectl apply --server-side -f crds/`
    # would conflict on them (an atomic list, .spec.versions): hand the CRD back to kubectl as we found it.
    crd = str(ROOT / "crds" / "rackfit.io_llmworkloads.yaml")
    if kubectl("get", "crd", "llmworkloads.rackfit.io").returncode == 0:
        out = kubectl("apply", "--server-side", "--force-conflicts", "-f", crd)
        assert out.returncode == 0, out.stderr
        kubectl("label", "crd", "llmworkloads.rackfit.io", "app.kubernetes.io/managed-by-")
        kubectl("annotate", "crd", "llmworkloads.rackfit.io", "meta.helm.sh/release-name-",
                "meta.helm.sh/release-namespace-", "helm.sh/resource-policy-")
    for path in sorted(STUBS.glob("*.yaml")):
        kubectl("delete", "--ignore-not-found", "-f", str(path))
    kubectl("delete", "namespace", NS, "--ignore-not-found", "--wait=false")


def test_lint(helm):
    helm("lint", "--strict", str(CHART))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_passes_server_side_validation(variant, helm, kubectl, tmp_path):
    rendered = helm("template", RELEASE, str(CHART), "-n", NS, *VARIANTS[variant]).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    if variant == "everything-on":
        assert {"ServiceMonitor", "PrometheusRule", "Issuer", "Certificate"} <= {d["kind"] for d in docs}
    (tmp_path / "chart.yaml").write_text(rendered)
    out = kubectl("apply", "--dry-run=server", "-f", str(tmp_path / "chart.yaml"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(server dry run)") == len(docs), out.stdout


def _adopt_existing_crd(kubectl) -> None:
    """Other e2e modules apply crds/ with kubectl; Helm adopts an object that carries its ownership
    metadata (the documented path for a CRD installed before the chart)."""
    if kubectl("get", "crd", "llmworkloads.rackfit.io").returncode == 0:
        assert kubectl("label", "--overwrite", "crd", "llmworkloads.rackfit.io",
                       "app.kubernetes.io/managed-by=Helm").returncode == 0
        assert kubectl("annotate", "--overwrite", "crd", "llmworkloads.rackfit.io",
                       f"meta.helm.sh/release-name={RELEASE}", f"meta.helm.sh/release-namespace={NS}").returncode == 0


@pytest.fixture(scope="module")
def release(helm, kubectl, cluster) -> Iterator[None]:
    _adopt_existing_crd(kubectl)
    # --wait: the Deployment's pods are scheduled on the simulated fleet and reported Ready by the
    # pod simulator (no container runs), so the rollout itself completes. No container runs, so the
    # uninstall hook's Job would never complete here: it is off (tests/real runs it for real).
    helm("install", RELEASE, str(CHART), "-n", NS, "--wait", "--timeout", "120s",
         "--set", "uninstall.releaseWorkloads=false")
    yield


def _secret(core: client.CoreV1Api) -> dict[str, str]:
    return core.read_namespaced_secret("rackfit-webhook-tls", NS).data


def test_install(release, helm, kubectl, core_v1, cluster):
    status = json.loads(helm("status", RELEASE, "-n", NS, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    apps = client.AppsV1Api(cluster.api)
    dep = apps.read_namespaced_deployment("rackfit", NS)
    assert dep.status.ready_replicas == 2
    custom = client.CustomObjectsApi(cluster.api)
    assert custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "rackfit")
    # "auto" monitoring: the monitoring API is served (stub CRDs), so both objects were installed
    assert custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", NS, "servicemonitors", "rackfit")
    assert custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", NS, "prometheusrules", "rackfit")
    ca = _secret(core_v1)["ca.crt"]
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        out = kubectl("get", kind, "rackfit", "-o", "jsonpath={.webhooks[0].clientConfig.caBundle}")
        assert out.returncode == 0 and out.stdout == ca, out.stderr


def test_upgrade_keeps_the_certificate(release, helm, core_v1):
    before = _secret(core_v1)
    helm("upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values", "--set", "webhooks.timeoutSeconds=5")
    assert _secret(core_v1) == before
    # the operator pods cannot answer webhooks here (no container runs): turn them off for what follows,
    # so that the Fail policy does not refuse other tests' LLMWorkloads
    helm("upgrade", RELEASE, str(CHART), "-n", NS, "--reuse-values", "--set", "webhooks.enabled=false",
         "--wait", "--timeout", "120s")


def _sa_kubeconfig(cluster, kubectl, path: Path) -> Path:
    token = kubectl("create", "token", "rackfit", "-n", NS, "--duration=1h")
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cl = dict(admin["clusters"][0]["cluster"])
    if "certificate-authority" in cl:
        ca_path = Path(cl.pop("certificate-authority"))
        if not ca_path.is_absolute():
            ca_path = cluster.kubeconfig.parent / ca_path
        cl["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "rackfit",
        "clusters": [{"name": "local", "cluster": cl}],
        "users": [{"name": "rackfit", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "rackfit", "context": {"cluster": "local", "user": "rackfit"}}]}))
    return path


def test_service_account_token_is_denied_what_the_operator_does_not_need(release, cluster, kubectl, tmp_path,
                                                                         namespace):
    sa = str(_sa_kubeconfig(cluster, kubectl, tmp_path / "sa.kubeconfig"))
    assert kubectl("--kubeconfig", sa, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout == \
        f"system:serviceaccount:{NS}:rackfit"

    def can(*args: str) -> str:
        return kubectl("--kubeconfig", sa, "auth", "can-i", *args).stdout.strip()
    assert can("delete", "nodes") == "no"
    assert can("create", "deployments", "-n", namespace) == "no"
    assert can("delete", "deployments", "-n", namespace) == "no"
    assert can("delete", "pods", "-n", namespace) == "yes"  # a gated pod made before its placement
    assert can("get", "secrets", "-n", NS) == "no"
    assert can("patch", "deployments", "-n", namespace) == "yes"
    assert can("patch", "llmworkloads.rackfit.io/status", "-n", namespace) == "yes"
    assert can("patch", "clusterkopfpeerings.kopf.dev") == "yes"


def test_operator_with_the_chart_s_service_account_places_a_workload(release, cluster, kubectl, core_v1, namespace,
                                                                     wait_for, tmp_path):
    """`rackfit operator` as the chart runs it (the chart's peering, catalog and tolerations), but as a
    local process authenticated by a token of the chart's ServiceAccount: placing works with exactly
    the chart's ClusterRole."""
    sa = _sa_kubeconfig(cluster, kubectl, tmp_path / "sa.kubeconfig")
    # the chart's webhooks point at its pods, which no container serves on the simulated fleet (nor does
    # any route reach their ClusterIP): with failurePolicy Fail they would refuse the workload and its
    # labelled pods. This operator runs with webhooks off; tests/real serves them for real.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        assert kubectl("delete", kind, "rackfit", "--ignore-not-found").returncode == 0
    catalog = core_v1.read_namespaced_config_map("rackfit-catalog", NS).data["catalog.yaml"]
    (tmp_path / "catalog.yaml").write_text(catalog)
    dep = client.AppsV1Api(cluster.api).read_namespaced_deployment("rackfit", NS)
    chart_env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env if e.value is not None}
    args = dep.spec.template.spec.containers[0].args
    assert args[:3] == ["operator", "--peering", "rackfit"]
    env = {**os.environ, **chart_env, "KUBECONFIG": str(sa), "RACKFIT_CATALOG": str(tmp_path / "catalog.yaml"),
           "RACKFIT_WEBHOOKS": "off", "RACKFIT_METRICS_PORT": "0", "RACKFIT_REPLAN_SECONDS": "2",
           "POD_ID": "e2e-local-operator", "PYTHONPATH": str(ROOT / "operator")}
    log = tmp_path / "operator.log"
    # the chart's peering object, not --standalone: the replicas' coordination works with this RBAC too
    proc = subprocess.Popen([sys.executable, "-m", "rackfit", "operator", "--peering", "rackfit", "-v"], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        custom = client.CustomObjectsApi(cluster.api)
        wait_for(lambda: "e2e-local-operator" in (custom.get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "rackfit").get("status") or {}), 60, "peering record")
        workload = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": "qwen"},
                    "spec": {"model": {"preset": "qwen2.5-7b"}, "workload": "inference", "precision": "bf16",
                             "inference": {"contextLength": 8192, "concurrency": 8},
                             "placement": {"instanceTypes": ["gd-8xh100ib-i128"]},
                             "target": {"kind": "Deployment", "name": "qwen"}}}
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "qwen"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "qwen"}},
                           "template": {"metadata": {"labels": {"app": "qwen"}},
                                        "spec": {"containers": [{"name": "server",
                                                                 "image": "registry.k8s.io/pause:3.10"}]}}}}
        out = kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([target, workload]))
        assert out.returncode == 0, out.stderr

        def placed():
            obj = custom.get_namespaced_custom_object("rackfit.io", "v1alpha1", namespace, "llmworkloads", "qwen")
            conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
            return obj if conds.get("Placed", {}).get("status") == "True" else None
        obj = wait_for(placed, 90, "qwen Placed")
        assert obj["status"]["placement"]["instanceType"] == "gd-8xh100ib-i128"
        patched = client.AppsV1Api(cluster.api).read_namespaced_deployment("qwen", namespace)
        limits = patched.spec.template.spec.containers[0].resources.limits or {}
        assert limits.get("nvidia.com/gpu"), "the operator patched the target's GPU request"
        text = log.read_text()
        assert "Forbidden" not in text and " 403" not in text, text[-3000:]
    except BaseException:
        print(log.read_text()[-5000:], file=sys.stderr)
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # never leave an operator behind for the next tests
            proc.kill()
            proc.wait(30)
            raise


def test_uninstall_keeps_the_crd(release, helm, kubectl, cluster):
    # no node here runs the chart's image, so the pre-delete hook Job could not start: tests/real runs
    # the hook on a real node (uninstall, then workloads, namespaces and the CRD deleted)
    helm("uninstall", RELEASE, "-n", NS, "--wait", "--no-hooks")
    assert kubectl("get", "crd", "llmworkloads.rackfit.io").returncode == 0  # crds.keep
    assert kubectl("get", "crd", "clusterkopfpeerings.kopf.dev").returncode == 0  # the chart's crds/: never deleted
    for kind in ("clusterrole/rackfit", "clusterrolebinding/rackfit", "clusterkopfpeering/rackfit",
                 "validatingwebhookconfiguration/rackfit", "mutatingwebhookconfiguration/rackfit"):
        assert kubectl("get", kind).returncode != 0, f"{kind} left behind"
