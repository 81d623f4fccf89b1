"""LeaderWorkerSet and JobSet in the local control plane: their upstream controllers, CRDs and webhooks.

`tools/k8s/build.sh` builds each controller from its Go module (sigs.k8s.io/lws, sigs.k8s.io/jobset;
tools/k8s/lws and tools/k8s/jobset pin the versions) into `addons/<name>-<version>/manager`, beside
the control plane's `bin/`, with the module's own `config/` (CRDs, webhook manifests). `start()` runs
them as processes of a `ControlPlane`, as their release manifests would in a cluster, except for how
they are reached:

- the CRDs are the module's `config/.../crd/bases`, applied as they are (LWS's conversion webhook
  patch is left out: the CRD has one version, so nothing converts);
- each gets its own configuration file (its `Configuration` kind): internal certificate management
  and leader election off, the webhook server on 127.0.0.1 and a free port with a serving
  certificate from the harness PKI (`rackfit.certs`), health on a free loopback port, metrics off;
- its webhook configurations are the module's manifests with its kustomize patches applied (the
  objectSelectors that confine the pod webhooks to its own pods), with `url:
  https://127.0.0.1:<port><path>` and that CA bundle instead of the in-cluster Service.

The webhooks stay on (failurePolicy Fail, as upstream): LeaderWorkerSet labels its pods and injects
exclusive-topology affinity in its pod webhook, and JobSet defaults and validates in its own, so
without them neither behaves as it does in a cluster. Each is ready once the API server calls its
validating webhook (a server-side dry run that only the webhook refuses).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster import binaries
from devcluster.ports import free_port
from devcluster.waiting import wait_established, wait_for
from rackfit.certs import write_serving_pair

# Must equal the versions in tools/k8s/lws/go.mod and tools/k8s/jobset/go.mod (a unit test checks it).
LWS_VERSION = "v0.7.0"
JOBSET_VERSION = "v0.10.1"
_READY_SECONDS = 90.0


@dataclass(frozen=True)
class Addon:
    name: str                 # component name: logs/<name>.log
    version: str
    config_kind: str          # apiVersion of its Configuration file
    crds: str                 # CRD directory inside the module's config/
    webhook_dir: str          # webhook manifests.yaml (and its kustomize patches) inside config/
    patches: tuple[str, ...]  # JSON-patch files kustomize applies to the webhook configurations
    probe: dict[str, Any]     # an object only its validating webhook refuses
    refusal: str              # ...with this in the message

    @property
    def home(self) -> Path:
        return addons_dir() / f"{self.dir_name}-{self.version}"

    @property
    def dir_name(self) -> str:
        return self.name.removesuffix("-controller")


LWS = Addon("lws-controller", LWS_VERSION, "config.lws.x-k8s.io/v1alpha1", "crd/bases", "webhook",
            ("mutating-patch.yaml", "validating-patch.yaml"),
            {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
             "metadata": {"name": "1-addon-probe"},  # a DNS-1123 name the webhook refuses (DNS-1035 only)
             "spec": {"leaderWorkerTemplate": {"size": 1, "workerTemplate": {"spec": {"containers": [
                 {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}},
            "DNS-1035")
JOBSET = Addon("jobset-controller", JOBSET_VERSION, "config.jobset.x-k8s.io/v1alpha1", "components/crd/bases",
               "components/webhook", ("patches/mutating-patch.yaml", "patches/validating-patch.yaml"),
               {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "addon-probe"},
                "spec": {"network": {"subdomain": "1-probe"},  # DNS-1123, refused by the webhook (DNS-1035)
                         "replicatedJobs": [{"name": "r", "replicas": 1, "template": {"spec": {"template": {
                             "spec": {"restartPolicy": "Never", "containers": [
                                 {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}}]}},
               "spec.network.subdomain")
ADDONS = (LWS, JOBSET)

# Kueue (sigs.k8s.io/kueue; tools/k8s/kueue/go.mod pins it), opt-in: `ControlPlane(kueue=True)`, `make
# dev-up KUEUE=1`. Integrations: Jobs, JobSets, LeaderWorkerSets and their pods (Kueue gates an LWS's
# pods through its pod integration); only their webhooks and Kueue's own are registered (a webhook
# of an integration that is off would be called and answer 404, refusing every such object). Its pod
# webhooks leave kube-system and kueue-system alone, as its kustomize patch does.
KUEUE_VERSION = "v0.17.0"
KUEUE_FRAMEWORKS = ("batch/job", "jobset.x-k8s.io/jobset", "leaderworkerset.x-k8s.io/leaderworkerset", "pod")
_KUEUE_RESOURCES = {("batch", "jobs"), ("jobset.x-k8s.io", "jobsets"), ("leaderworkerset.x-k8s.io", "leaderworkersets"),
                    ("", "pods")}
KUEUE = Addon("kueue-controller", KUEUE_VERSION, "config.kueue.x-k8s.io/v1beta2", "components/crd/bases",
              "components/webhook", (),
              # a suspended Job is only ever created suspended by Kueue's mutating webhook: probed separately
              {}, "")


def addons_dir() -> Path:
    """Where build.sh puts the controllers: `addons/` beside the control plane's `bin/`."""
    return binaries.bin_dir().parent / "addons"


def require(addons: tuple[Addon, ...] = ADDONS) -> None:
    """Raises `BinariesMissing` naming every controller that has not been built."""
    missing = [str(a.home / "manager") for a in addons if not (a.home / "manager").exists()]
    if missing:
        raise binaries.BinariesMissing(f"missing {', '.join(missing)}: {binaries.BUILD_HINT}")


def crds(addon: Addon) -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((addon.home / "config" / addon.crds).glob("*.yaml"))]


def webhook_configurations(addon: Addon, url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The module's webhook configurations as kustomize renders them (its JSON patches applied),
    named after the addon, calling `url` + each webhook's path (pure but for reading the files)."""
    where = addon.home / "config" / addon.webhook_dir
    docs = [d for d in yaml.safe_load_all((where / "manifests.yaml").read_text()) if d]
    if addon is KUEUE:
        docs = [kueue_webhooks(d) for d in docs]
    for name in addon.patches:
        ops = yaml.safe_load((where / name).read_text())
        kind = "MutatingWebhookConfiguration" if "mutating" in name else "ValidatingWebhookConfiguration"
        for doc in docs:
            if doc["kind"] == kind:
                apply_json_patch(doc, ops)
    return [point_at(d, f"{addon.dir_name}-{d['metadata']['name']}", url, ca_bundle) for d in docs]


def apply_json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """The RFC 6902 operations kustomize's patches use here: replace and add (in place)."""
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        if op["op"] not in ("replace", "add"):
            raise ValueError(f"unsupported kustomize patch op {op['op']!r} in {op}")
        if isinstance(node, list):
            if last == "-":
                node.append(op["value"])
            elif op["op"] == "add":
                node.insert(int(last), op["value"])
            else:
                node[int(last)] = op["value"]
        else:
            node[last] = op["value"]


def point_at(config: dict[str, Any], name: str, url: str, ca_bundle: bytes) -> dict[str, Any]:
    import base64

    out = copy.deepcopy(config)
    out["metadata"] = {"name": name}
    for hook in out["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": url + path, "caBundle": base64.b64encode(ca_bundle).decode()}
    return out


# Kueue's topology of the simulated fleet, for topology-aware scheduling (TAS): zone (block), NVL72 clique
# (rack), host; a ResourceFlavor names it with `topologyName` (examples/kueue/)
TOPOLOGY_LEVELS = ("topology.kubernetes.io/zone", "nvidia.com/gpu.clique", "kubernetes.io/hostname")


def kueue_topology(name: str = "nvl72") -> dict[str, Any]:
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Topology", "metadata": {"name": name},
            "spec": {"levels": [{"nodeLabel": label} for label in TOPOLOGY_LEVELS]}}


def kueue_webhooks(config: dict[str, Any]) -> dict[str, Any]:
    """Kueue's webhook configuration less the webhooks of integrations that are off (pure)."""
    out = copy.deepcopy(config)
    keep = []
    for hook in out["webhooks"]:
        resources = {(g, r.split("/")[0]) for rule in hook["rules"] for g in rule["apiGroups"]
                     for r in rule["resources"]}
        if any(g == "kueue.x-k8s.io" for g, _ in resources) or resources & _KUEUE_RESOURCES:
            if ("", "pods") in resources:
                hook["namespaceSelector"] = {"matchExpressions": [{"key": "kubernetes.io/metadata.name",
                                                                   "operator": "NotIn",
                                                                   "values": ["kube-system", "kueue-system"]}]}
            keep.append(hook)
    out["webhooks"] = keep
    return out


def config_file(addon: Addon, webhook_port: int, cert_dir: Path, health_port: int) -> dict[str, Any]:
    conf = {"apiVersion": addon.config_kind, "kind": "Configuration",
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"}}
    if addon is KUEUE:
        conf |= {"namespace": "kueue-system", "manageJobsWithoutQueueName": False,
                 "integrations": {"frameworks": list(KUEUE_FRAMEWORKS)},
                 "clientConnection": {"qps": 100, "burst": 200}}
    return conf


def start(plane, kubectl: Path | None = None, addons: tuple[Addon, ...] = ADDONS) -> None:
    """Install the CRDs and webhooks of `addons` (LeaderWorkerSet and JobSet; Kueue after them) and run
    their controllers as components of `plane` (a started `ControlPlane`); returns once the API server
    calls their webhooks."""
    require(addons)
    kubectl = kubectl or binaries.require("kubectl")["kubectl"]
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    # a directory of its own for each call: the controllers reload their serving certificate when its file
    # changes, so a second call (Kueue's, after LWS and JobSet) writing a new pair over the first would leave
    # the earlier webhooks serving a certificate their configuration's CA bundle does not sign
    pki = plane.data_dir / "pki" / ("kueue" if KUEUE in addons else "addons")
    ca, _, _ = write_serving_pair(pki, ["127.0.0.1", "localhost"], validity=dt.timedelta(days=7))

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([str(kubectl), *args], input=input, capture_output=True, text=True, env=env, timeout=60)

    if KUEUE in addons:
        run("create", "namespace", "kueue-system")
    # every addon's CRDs in one apply, their controllers started together, then their webhooks: the
    # start-ups overlap instead of adding up
    docs = [c for addon in addons for c in crds(addon)]
    applied = run("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
    if applied.returncode:
        raise RuntimeError(f"{', '.join(a.name for a in addons)}: CRDs not applied: {applied.stderr}")
    wait_established(run, *(c["metadata"]["name"] for c in docs), timeout=30)
    processes, hooks = [], []
    for addon in addons:
        port, health = free_port(), free_port()
        conf = plane.data_dir / f"{addon.name}.yaml"
        conf.write_text(yaml.safe_dump(config_file(addon, port, pki, health)))
        # Kueue: its visibility API server (an aggregated API on a fixed port, with self-made certificates
        # under /visibility) off; its metrics certificate from the harness PKI (tools/k8s/build.sh)
        extra = ["--feature-gates=VisibilityOnDemand=false"] if addon is KUEUE else []
        processes.append((addon.name, [addon.home / "manager", f"--config={conf}", f"--kubeconfig={plane.kubeconfig}",
                                       "--zap-log-level=info", *extra],
                          _healthy(f"http://127.0.0.1:{health}/readyz"),
                          {**env, "KUEUE_METRICS_CERT_DIR": str(pki)} if addon is KUEUE else env))
        hooks += webhook_configurations(addon, f"https://127.0.0.1:{port}", ca.read_bytes())
    plane.add_processes(processes)
    applied = run("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(hooks))
    if applied.returncode:
        raise RuntimeError(f"{', '.join(a.name for a in addons)}: webhooks not applied: {applied.stderr}")
    for addon in addons:
        ready = (lambda: _suspended_by_kueue(run)) if addon is KUEUE else (lambda a=addon: _refused_by_webhook(run, a))
        wait_for(ready, _READY_SECONDS, f"the {addon.name} webhooks in effect")


_QUEUED_JOB = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "kueue-probe", "labels": {"kueue.x-k8s.io/queue-name": "probe"}},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                   {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}}}


def _suspended_by_kueue(run) -> bool:
    """Kueue's mutating webhook suspends a Job that names a queue (a server-side dry run)."""
    out = run("create", "--dry-run=server", "-n", "default", "-o", "json", "-f", "-", input=json.dumps(_QUEUED_JOB))
    return out.returncode == 0 and json.loads(out.stdout)["spec"].get("suspend") is True


def _refused_by_webhook(run, addon: Addon) -> bool:
    out = run("create", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(addon.probe))
    return out.returncode != 0 and "admission webhook" in out.stderr and addon.refusal in out.stderr


def _healthy(url: str):
    def probe() -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    return probe
