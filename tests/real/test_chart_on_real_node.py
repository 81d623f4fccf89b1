"""The chart installed for real: the built image running as the operator's two replicas on a real
node, under the `restricted` Pod Security Standard; the webhooks called by the API server through
the chart's Service (kube-proxy routes its ClusterIP to the pods) with the chart's certificate;
peering failover; an upgrade to a new image tag while admissions keep being answered; Prometheus
scraping the pods as the chart's ServiceMonitor says and firing the chart's alerts; uninstall, then
workloads, their namespaces and the CRD deleted without an operator.

The tests run in file order and share one release (`release`); each states the bound it holds to.
Timings are printed (pytest -s) for docs/helm.md.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from devcluster import realnode
from devcluster.prometheus import Prometheus, PrometheusUnavailable
from tooling import unavailable

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "rackfit"
NS = RELEASE = "rackfit"
FOR = "6s"  # the alerts' `for`, shortened through values
VALUES = {
    "operator": {"replanSeconds": 2, "nodeSelector": {"kubernetes.io/hostname": realnode.NODE_NAME},
                 "tolerations": [realnode.TOLERATION]},
    "monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {
        "enabled": False, "rules": {r: {"for": FOR} for r in (
            "workloadOversubscribed", "domainOversubscribed", "workloadUnplaceable", "operatorDown")}}},
}
FAILOVER_BOUND_S = 45.0  # a new workload placed after the active replica was deleted
ALERT_BOUND_S = 60.0


def _timing(what: str, seconds: float) -> None:
    print(f"\n[timing] {what}: {seconds:.1f} s")


def _values_file(real, tmp: Path, tag: str | None = None) -> Path:
    repo, _, image_tag = real.image.partition(":")
    values = {**VALUES, "image": {"repository": repo, "tag": tag or image_tag, "pullPolicy": "Never"}}
    path = tmp / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _workload(name: str, target: str | None, **spec) -> dict:
    body = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": name},
            "spec": {"model": {"preset": "qwen2.5-7b"}, "workload": "inference", "precision": "bf16",
                     "inference": {"contextLength": 8192, "concurrency": 8},
                     "placement": {"instanceTypes": ["gd-8xh100ib-i128"]}, **spec}}
    if target:
        body["spec"]["target"] = {"kind": "Deployment", "name": target}
    return body


def _deployment(name: str, workload: str, replicas: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, "rackfit.io/workload": workload}},
                                  "spec": {"containers": [{"name": "server", "image": realnode.PAUSE_IMAGE}]}}}}


def _conditions(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict:
    obj = custom.get_namespaced_custom_object("rackfit.io", "v1alpha1", namespace, "llmworkloads", name)
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _placed(custom, namespace, name):
    return lambda: _conditions(custom, namespace, name).get("Placed", {}).get("status") == "True"


def _operator_pods(core: client.CoreV1Api) -> list:
    selector = (f"app.kubernetes.io/name=rackfit,app.kubernetes.io/instance={RELEASE},"
                "app.kubernetes.io/component=operator")
    return core.list_namespaced_pod(NS, label_selector=selector).items


def _admission_answers(kubectl) -> bool:
    """A server dry run of a valid workload, which only passes when the validating webhook answers."""
    out = kubectl("create", "-n", "default", "--dry-run=server", "-f", "-", input=json.dumps(_workload("probe", None)))
    return out.returncode == 0


def _peers(custom) -> dict:
    return custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "rackfit").get("status") or {}


@pytest.fixture(scope="module")
def custom(real) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(real.api)


@pytest.fixture(scope="module")
def core(real) -> client.CoreV1Api:
    return client.CoreV1Api(real.api)


@pytest.fixture(scope="module")
def release(real, helm, kubectl, wait_for, tmp_path_factory) -> Path:
    """`helm install --wait` into namespace rackfit, which enforces the restricted Pod Security Standard."""
    out = kubectl("create", "namespace", NS)
    assert out.returncode == 0, out.stderr
    out = kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted",
                  "pod-security.kubernetes.io/enforce-version=latest")
    assert out.returncode == 0, out.stderr
    values = _values_file(real, tmp_path_factory.mktemp("values"))
    started = time.monotonic()
    helm("install", RELEASE, str(CHART), "-n", NS, "-f", str(values), "--wait", "--timeout", "180s")
    _timing(f"helm install --wait (2 replicas Ready on {realnode.NODE_NAME})", time.monotonic() - started)
    wait_for(lambda: _admission_answers(kubectl), 60, "the webhook answering through the Service")
    _timing("install -> the webhook answering through the Service", time.monotonic() - started)
    return values


def test_replicas_run_ready_as_non_root_on_a_read_only_root(release, real, core, kubectl):
    pods = _operator_pods(core)
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.node_name == realnode.NODE_NAME
        assert pod.status.phase == "Running"
        (status,) = pod.status.container_statuses
        assert status.ready and status.restart_count == 0, status
        assert ipaddress.ip_address(pod.status.pod_ip) in ipaddress.ip_network(realnode.POD_CIDR)
        ids = kubectl("exec", "-n", NS, pod.metadata.name, "--", "sh", "-c", "id -u; id -g")
        assert ids.returncode == 0 and ids.stdout.split() == ["65532", "65532"], ids.stdout + ids.stderr
        write = kubectl("exec", "-n", NS, pod.metadata.name, "--", "touch", "/opt/rackfit/probe")
        assert write.returncode != 0 and "Read-only file system" in write.stderr, write.stderr
        tmp = kubectl("exec", "-n", NS, pod.metadata.name, "--", "touch", "/tmp/probe")  # the chart's emptyDir
        assert tmp.returncode == 0, tmp.stderr


def test_the_namespace_enforces_restricted(release, kubectl):
    """The replicas above were admitted by `restricted`; the same namespace refuses a pod that is not."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": NS},
           "spec": {"containers": [{"name": "c", "image": realnode.PAUSE_IMAGE}]}}
    out = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(pod))
    assert out.returncode != 0 and "violates PodSecurity \"restricted:latest\"" in out.stderr, out.stderr


def test_one_replica_acts_the_other_stands_by(release, custom, core, wait_for):
    names = {p.metadata.name for p in _operator_pods(core)}
    peers = wait_for(lambda: (p := _peers(custom)) and set(p) >= names and p, 60, "both replicas in the peering")
    priorities = [peers[n]["priority"] for n in names]
    assert len(set(priorities)) == 2, peers  # equal priorities would pause both (kopf)


def test_webhooks_are_called_through_the_service(release, real, core, custom, kubectl, namespace, wait_for):
    endpoints = core.read_namespaced_endpoints(RELEASE, NS)
    ips = {a.ip for s in endpoints.subsets or [] for a in s.addresses or []}
    assert ips == {p.status.pod_ip for p in _operator_pods(core)}
    # validating: refused by the operator's answer (the API server reached it through the Service)
    bad = _workload("bad", None)  # the schema allows it; only the operator knows no such preset
    bad["spec"]["model"]["preset"] = "llama-9"
    out = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bad))
    assert out.returncode != 0 and 'admission webhook "validate-llmworkload.rackfit.io" denied' in out.stderr, \
        out.stderr
    assert "spec.model.preset" in out.stderr
    # a valid one is admitted and placed by the operator in its pod
    out = kubectl("apply", "-n", namespace, "-f", "-",
                  input=yaml.safe_dump_all([_deployment("qwen", "qwen"), _workload("qwen", "qwen")]))
    assert out.returncode == 0, out.stderr
    wait_for(_placed(custom, namespace, "qwen"), 60, "qwen Placed by the operator's pod")
    # mutating: a labelled pod of a workload not placed yet is gated at creation
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "early", "labels": {"rackfit.io/workload": "none"}},
           "spec": {"containers": [{"name": "c", "image": realnode.PAUSE_IMAGE}]}}
    out = kubectl("create", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(pod))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["spec"].get("schedulingGates") == [{"name": "rackfit.io/placement"}]


@pytest.fixture(scope="module")
def prometheus(release, real, helm) -> Prometheus:
    rendered = helm("template", RELEASE, str(CHART), "-n", NS, "-f", str(release),
                    "--set", "monitoring.serviceMonitor.enabled=true",
                    "--set", "monitoring.prometheusRule.enabled=true",
                    "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
                    "--api-versions", "monitoring.coreos.com/v1/PrometheusRule").stdout
    docs = {d["kind"]: d for d in yaml.safe_load_all(rendered) if d}
    try:
        prom = Prometheus(real.plane, docs["ServiceMonitor"], docs["PrometheusRule"]).start()
    except PrometheusUnavailable as e:
        unavailable(str(e))
    yield prom
    prom.stop()


def test_prometheus_scrapes_both_replicas(prometheus, core, wait_for):
    pods = {p.metadata.name for p in _operator_pods(core)}
    up = wait_for(lambda: (r := prometheus.query(f'up{{job="{RELEASE}",namespace="{NS}"}} == 1')) and len(r) == 2 and r,
                  60, "both replicas scraped and up")
    assert {s["metric"]["pod"] for s in up} == pods


def test_an_undersized_target_fires_workload_oversubscribed(prometheus, custom, core, kubectl, namespace, wait_for):
    """Llama 3.1 405B in BF16 needs 2 nodes x 4 GPUs on GB200; its Deployment asks for 1 replica."""
    workload = {"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload", "metadata": {"name": "llama-405b"},
                "spec": {"model": {"preset": "llama-3.1-405b"}, "workload": "inference", "precision": "bf16",
                         "inference": {"contextLength": 16384, "concurrency": 16},
                         "placement": {"instanceTypes": ["gb200-4x"]},
                         "target": {"kind": "Deployment", "name": "llama-405b"}}}
    out = kubectl("apply", "-n", namespace, "-f", "-",
                  input=yaml.safe_dump_all([_deployment("llama-405b", "llama-405b", replicas=1), workload]))
    assert out.returncode == 0, out.stderr
    wait_for(lambda: _conditions(custom, namespace, "llama-405b").get("Oversubscribed", {}).get("reason")
             == "TargetUndersized", 60, "Oversubscribed=TargetUndersized")
    started = time.monotonic()
    alerts = wait_for(lambda: [a for a in prometheus.firing("RackfitWorkloadOversubscribed")
                               if a["labels"].get("namespace") == namespace], ALERT_BOUND_S,
                      "RackfitWorkloadOversubscribed firing")
    _timing(f"RackfitWorkloadOversubscribed firing after the condition (for: {FOR})", time.monotonic() - started)
    assert alerts[0]["labels"]["name"] == "llama-405b" and alerts[0]["labels"]["severity"] == "warning"
    # with that workload (oversubscribed, its pod bound in a GB200 rack) every panel has something to show
    _every_dashboard_query_returns_data(prometheus, core, wait_for)


def _every_dashboard_query_returns_data(prometheus, core, wait_for):
    dashboard = json.loads(core.read_namespaced_config_map(f"{RELEASE}-dashboard", NS).data["rackfit.json"])
    # the estimate-vs-observed panels need dcgm-exporter's and the engines' series: test_observed.py checks them
    exprs = [t["expr"] for p in dashboard["panels"] if not p["title"].startswith("Estimate vs observed")
             for t in p.get("targets", []) if t.get("expr")]
    assert len(exprs) >= 10
    variables = {"$namespace": ".*", "${namespace}": ".*", "$instance_type": ".*", "${instance_type}": ".*",
                 "$__rate_interval": "1m", "$__range": "5m"}

    def expand(expr: str) -> str:
        for var, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(var, value)
        return expr

    empty = list(exprs)

    def all_answer():
        empty[:] = [e for e in exprs if not prometheus.query(expand(e))]
        return not empty
    try:
        wait_for(all_answer, 90, "every dashboard query to return data")
    except Exception:
        pytest.fail(f"no data for: {empty}")


def test_deleting_the_active_replica_fails_over(release, real, core, custom, kubectl, namespace, wait_for):
    peers = _peers(custom)
    pods = {p.metadata.name for p in _operator_pods(core)}
    active = max((n for n in peers if n in pods), key=lambda n: peers[n]["priority"])
    core.delete_namespaced_pod(active, NS)  # graceful: preStop sleep, SIGTERM, kopf leaves the peering
    # only once the active replica is gone (it serves through its preStop sleep) is the other alone
    wait_for(lambda: active not in {p.metadata.name for p in _operator_pods(core)}, 60, f"{active} gone")
    started = time.monotonic()
    out = kubectl("apply", "-n", namespace, "-f", "-",
                  input=yaml.safe_dump_all([_deployment("after", "after"), _workload("after", "after")]))
    assert out.returncode == 0, out.stderr
    wait_for(_placed(custom, namespace, "after"), FAILOVER_BOUND_S, "a workload placed by the standby")
    took = time.monotonic() - started
    _timing("active replica gone -> a new workload Placed by the other", took)
    assert took < FAILOVER_BOUND_S
    standby = (pods - {active}).pop()
    assert _peers(custom).get(standby), "the standby is still in the peering"
    wait_for(lambda: client.AppsV1Api(real.api).read_namespaced_deployment(RELEASE, NS).status.ready_replicas == 2,
             120, "the Deployment back to 2 ready replicas")


def test_upgrade_to_a_new_tag_keeps_admission_answered(release, real, helm, kubectl, namespace, tmp_path, wait_for):
    """While `helm upgrade` rolls both replicas to a new tag, pods and workloads keep being admitted
    by the webhooks (server dry runs every 0.3 s): no request fails for want of a webhook answer."""
    tag = real.image.partition(":")[2] + "-upgrade"
    # the same image content under a new tag: the rollout replaces every pod
    ref = f"{real.image.partition(':')[0]}:{tag}"
    assert subprocess.run([real.engine, "tag", real.image, ref]).returncode == 0
    real.node.load_image(real.engine, ref)
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "labels": {"rackfit.io/workload": "none"}},
           "spec": {"containers": [{"name": "c", "image": realnode.PAUSE_IMAGE}]}}

    def probe():
        while not stop.is_set():
            out = kubectl("create", "-n", namespace, "--dry-run=server", "-o", "json", "-f", "-",
                          input=json.dumps(pod), timeout=30)
            gated = out.returncode == 0 and json.loads(out.stdout)["spec"].get("schedulingGates")
            wl = kubectl("create", "-n", namespace, "--dry-run=server", "-f", "-",
                         input=json.dumps(_workload("probe", None)), timeout=30)
            if not gated:
                failures.append(f"pod not gated: {out.stderr.strip()}")
            if wl.returncode != 0:
                failures.append(f"workload refused: {wl.stderr.strip()}")
            answered[0] += 1
            time.sleep(0.3)
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        helm("upgrade", RELEASE, str(CHART), "-n", NS, "-f", str(_values_file(real, tmp_path, tag)),
             "--wait", "--timeout", "180s")
        _timing("helm upgrade --wait to a new tag", time.monotonic() - started)
        time.sleep(3)  # admissions right after the old pods went away count too
    finally:
        stop.set()
        thread.join(60)
    core = client.CoreV1Api(real.api)
    images = {p.spec.containers[0].image for p in _operator_pods(core) if not p.metadata.deletion_timestamp}
    assert images == {ref}
    assert answered[0] >= 10, answered
    assert not failures, f"{len(failures)} of {answered[0]} rounds failed: {failures[:5]}"


def test_operator_scaled_to_zero_fires_operator_down(release, prometheus, real, wait_for):
    client.AppsV1Api(real.api).patch_namespaced_deployment(RELEASE, NS, {"spec": {"replicas": 0}})
    started = time.monotonic()
    alerts = wait_for(lambda: prometheus.firing("RackfitOperatorDown"), ALERT_BOUND_S + 30,
                      "RackfitOperatorDown firing")
    _timing(f"operator scaled to 0 -> RackfitOperatorDown firing (for: {FOR})", time.monotonic() - started)
    assert alerts[0]["labels"]["severity"] == "critical" and alerts[0]["labels"]["namespace"] == NS


def test_uninstall_then_workloads_namespaces_and_the_crd_delete(release, real, helm, kubectl, core, custom, wait_for):
    """After `helm uninstall` (its hook releases every workload) nothing waits for the operator."""
    client.AppsV1Api(real.api).patch_namespaced_deployment(RELEASE, NS, {"spec": {"replicas": 2}})
    wait_for(lambda: client.AppsV1Api(real.api).read_namespaced_deployment(RELEASE, NS).status.ready_replicas == 2,
             120, "2 ready replicas again")
    # Ready pods are not yet reachable: the EndpointSlice and then kube-proxy's rules follow a moment
    # later, and until then the Service's ClusterIP refuses connections (a CI run met exactly that).
    wait_for(lambda: _admission_answers(kubectl), 60, "the webhook answering through the Service again")
    held = []
    for ns in ("keep-a", "keep-b"):
        assert kubectl("create", "namespace", ns).returncode == 0
        out = kubectl("apply", "-n", ns, "-f", "-",
                      input=yaml.safe_dump_all([_deployment("w", "w"), _workload("w", "w")]))
        assert out.returncode == 0, out.stderr
        wait_for(_placed(custom, ns, "w"), 60, f"{ns}/w Placed")
        held.append(ns)
    fin = custom.get_namespaced_custom_object("rackfit.io", "v1alpha1", "keep-a", "llmworkloads", "w")
    assert "kopf.zalando.org/KopfFinalizerMarker" in fin["metadata"]["finalizers"]
    started = time.monotonic()
    helm("uninstall", RELEASE, "-n", NS, "--wait", "--timeout", "180s")
    _timing("helm uninstall --wait (pre-delete hook included)", time.monotonic() - started)
    assert not _operator_pods(core)
    assert not core.list_namespaced_pod(NS).items, "the hook's pod is gone too"
    # a workload, a namespace holding one, then the kept CRD with a workload still in it
    assert kubectl("delete", "-n", "keep-a", "llmworkload", "w", "--timeout=30s").returncode == 0
    assert kubectl("delete", "namespace", "keep-a", "--timeout=60s").returncode == 0
    out = kubectl("delete", "crd", "llmworkloads.rackfit.io", "--timeout=60s")
    assert out.returncode == 0, out.stderr
    assert kubectl("get", "crd", "llmworkloads.rackfit.io").returncode != 0
    assert kubectl("delete", "namespace", "keep-b", "--timeout=60s").returncode == 0
