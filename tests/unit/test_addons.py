"""The LeaderWorkerSet and JobSet add-ons of the local control plane: pinned versions, and their
webhook configurations rendered as kustomize would, pointed at loopback."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import yaml

from devcluster import addons

TOOLS = Path(__file__).resolve().parents[2] / "tools" / "k8s"


@pytest.mark.parametrize(("module", "version", "where"), [("sigs.k8s.io/lws", addons.LWS_VERSION, "lws"),
                                                          ("sigs.k8s.io/jobset", addons.JOBSET_VERSION, "jobset"),
                                                          ("sigs.k8s.io/kueue", addons.KUEUE_VERSION, "kueue")])
def test_pinned_versions_match_their_go_mod(module, version, where):
    go_mod = (TOOLS / where / "go.mod").read_text()
    assert re.search(rf"^\s*{re.escape(module)} {re.escape(version)}\b", go_mod, re.M)


def test_json_patches_replace_and_add_as_kustomize_does():
    doc = {"webhooks": [{"name": "a"}, {"name": "b"}]}
    addons.apply_json_patch(doc, [{"op": "replace", "path": "/webhooks/1", "value": {"name": "B"}},
                                  {"op": "add", "path": "/webhooks/-", "value": {"name": "c"}},
                                  {"op": "add", "path": "/metadata", "value": {"name": "x"}}])
    assert doc == {"webhooks": [{"name": "a"}, {"name": "B"}, {"name": "c"}], "metadata": {"name": "x"}}
    with pytest.raises(ValueError, match="unsupported"):
        addons.apply_json_patch(doc, [{"op": "remove", "path": "/metadata"}])


def fake_module(tmp_path, monkeypatch) -> addons.Addon:
    """An add-on home laid out as build.sh lays out LWS's: config/webhook with its patches."""
    monkeypatch.setenv("RACKFIT_K8S_BIN", str(tmp_path / "bin"))
    hooks = tmp_path / "addons" / f"lws-{addons.LWS_VERSION}" / "config" / "webhook"
    hooks.mkdir(parents=True)

    def hook(name, path):
        return {"name": name, "clientConfig": {"service": {"name": "webhook-service", "namespace": "system",
                                                            "path": path}}, "failurePolicy": "Fail"}
    hooks.joinpath("manifests.yaml").write_text(yaml.safe_dump_all([
        {"kind": "MutatingWebhookConfiguration", "metadata": {"name": "mutating-webhook-configuration"},
         "webhooks": [hook("mlws", "/mutate-lws"), hook("mpod", "/mutate--v1-pod")]},
        {"kind": "ValidatingWebhookConfiguration", "metadata": {"name": "validating-webhook-configuration"},
         "webhooks": [hook("vlws", "/validate-lws"), hook("vpod", "/validate--v1-pod")]}]))
    for kind in ("mutating", "validating"):
        pod = {**hook(f"{kind[0]}pod", f"/{'mutate' if kind == 'mutating' else 'validate'}--v1-pod"),
               "objectSelector": {"matchExpressions": [{"key": "leaderworkerset.sigs.k8s.io/name",
                                                        "operator": "Exists"}]}}
        hooks.joinpath(f"{kind}-patch.yaml").write_text(yaml.safe_dump(
            [{"op": "replace", "path": "/webhooks/1", "value": pod}]))
    return addons.LWS


def test_webhooks_keep_upstream_rules_and_selectors_and_call_loopback(tmp_path, monkeypatch):
    lws = fake_module(tmp_path, monkeypatch)
    rendered = addons.webhook_configurations(lws, "https://127.0.0.1:9999", b"CA")
    assert [c["metadata"]["name"] for c in rendered] == ["lws-mutating-webhook-configuration",
                                                        "lws-validating-webhook-configuration"]
    for config in rendered:
        first, pods = config["webhooks"]
        assert "objectSelector" not in first and first["failurePolicy"] == "Fail"
        # only LeaderWorkerSet's own pods reach its pod webhooks (the kustomize patch)
        assert pods["objectSelector"]["matchExpressions"][0]["key"] == "leaderworkerset.sigs.k8s.io/name"
        for hook in config["webhooks"]:
            assert hook["clientConfig"]["url"].startswith("https://127.0.0.1:9999/")
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == b"CA"
            assert "service" not in hook["clientConfig"]


def test_the_configuration_turns_off_cert_management_and_leader_election_and_serves_on_loopback(tmp_path):
    conf = addons.config_file(addons.JOBSET, 9443, tmp_path, 8081)
    assert conf["apiVersion"] == "config.jobset.x-k8s.io/v1alpha1" and conf["kind"] == "Configuration"
    assert conf["internalCertManagement"] == {"enable": False} and conf["leaderElection"] == {"leaderElect": False}
    assert conf["webhook"] == {"host": "127.0.0.1", "port": 9443, "certDir": str(tmp_path)}


def test_missing_controllers_name_the_build_step(tmp_path, monkeypatch):
    monkeypatch.setenv("RACKFIT_K8S_BIN", str(tmp_path / "bin"))
    with pytest.raises(addons.binaries.BinariesMissing, match=r"lws-v.*manager.*make k8s-bin"):
        addons.require()


def test_kueue_registers_only_the_webhooks_of_its_integrations_and_its_own():
    config = {"webhooks": [
        {"name": "mjob.kb.io", "rules": [{"apiGroups": ["batch"], "resources": ["jobs"]}]},
        {"name": "mpod.kb.io", "rules": [{"apiGroups": [""], "resources": ["pods"]}]},
        {"name": "mdeployment.kb.io", "rules": [{"apiGroups": ["apps"], "resources": ["deployments"]}]},
        {"name": "mrayjob.kb.io", "rules": [{"apiGroups": ["ray.io"], "resources": ["rayjobs"]}]},
        {"name": "vworkload.kb.io", "rules": [{"apiGroups": ["kueue.x-k8s.io"],
                                              "resources": ["workloads", "workloads/status"]}]}]}
    kept = addons.kueue_webhooks(config)["webhooks"]
    assert [h["name"] for h in kept] == ["mjob.kb.io", "mpod.kb.io", "vworkload.kb.io"]
    assert kept[1]["namespaceSelector"]["matchExpressions"][0]["values"] == ["kube-system", "kueue-system"]
    conf = addons.config_file(addons.KUEUE, 1, Path("/c"), 2)
    assert conf["integrations"]["frameworks"] == list(addons.KUEUE_FRAMEWORKS)
    assert conf["manageJobsWithoutQueueName"] is False and conf["internalCertManagement"] == {"enable": False}


def test_the_topology_is_block_rack_host_on_the_fleet_s_labels():
    levels = [lvl["nodeLabel"] for lvl in addons.kueue_topology()["spec"]["levels"]]
    assert levels == ["topology.kubernetes.io/zone", "nvidia.com/gpu.clique", "kubernetes.io/hostname"]
