"""ComputeDomains for placements across nodes of one NVL72 rack: which placements get one, its spec, the
claim in every pod template and taken back exactly; the harness's stand-in for NVIDIA's DRA driver."""

from __future__ import annotations

import copy

import yaml
from test_targets import merge

from devcluster import computedomains as sim
from rackfit.operator import targets
from rackfit.operator.config import OperatorConfig
from rackfit.operator.targets.computedomain import changes, channel_claim, compute_domain, name, needs_one, pod_claim
from tooling import placement

RACK = placement()
HGX = placement(instanceType="gd-8xh100ib-i128", nodes=1, gpusPerNode=8, nvlinkDomain="kubernetes.io/hostname=h-0",
                nodeSelector={"kubernetes.io/hostname": "h-0"})
SEL, TOL = RACK.node_selector, []


def test_only_placements_across_nodes_of_one_multi_node_domain_get_one():
    assert needs_one(RACK)
    assert needs_one(placement(nvlinkDomain="ds.coreweave.com/nvlink.domain=d"))
    assert not needs_one(placement(nodes=1))  # single node: NVLink inside the node needs no IMEX
    assert not needs_one(HGX)
    assert not needs_one(HGX.model_copy(update={"nodes": 2, "nvlink_domain": None}))  # HGX across nodes
    assert not needs_one(None)
    assert channel_claim("w", HGX) is None


def test_the_compute_domain_is_sized_named_and_owned_from_the_placement():
    cd = compute_domain("ns", "llama-405b", "uid-1", RACK)
    assert cd["apiVersion"] == "resource.nvidia.com/v1beta1" and cd["kind"] == "ComputeDomain"
    assert cd["metadata"]["namespace"] == "ns" and cd["metadata"]["labels"] == {"rackfit.io/workload": "llama-405b"}
    assert cd["metadata"]["ownerReferences"] == [{"apiVersion": "rackfit.io/v1alpha1", "kind": "LLMWorkload",
                                                  "name": "llama-405b", "uid": "uid-1", "controller": True}]
    claim = channel_claim("llama-405b", RACK)
    assert cd["spec"] == {"numNodes": 2, "channel": {"resourceClaimTemplate": {
        "name": claim["resourceClaimTemplateName"]}, "allocationMode": "Single"}}
    assert claim["name"] == "rackfit-imex-channel"
    # the same placement, the same name; another domain or node count, another ComputeDomain
    assert name("llama-405b", RACK) == cd["metadata"]["name"] and cd["metadata"]["name"].startswith("llama-405b-")
    assert name("llama-405b", placement(nvlinkDomain="nvidia.com/gpu.clique=u.2")) != cd["metadata"]["name"]
    assert name("llama-405b", placement(nodes=3)) != cd["metadata"]["name"]
    assert len(name("x" * 253, RACK)) <= 63


def test_the_compute_domain_matches_the_driver_s_crd_schema():
    schema = sim.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec = compute_domain("ns", "w", "u", RACK)["spec"]
    assert set(spec) <= set(schema["properties"]) and set(schema.get("required", [])) <= set(spec)
    channel = schema["properties"]["channel"]
    assert set(spec["channel"]) <= set(channel["properties"])
    assert spec["channel"]["allocationMode"] in channel["properties"]["allocationMode"]["enum"]


def test_changes_create_what_is_missing_and_delete_the_rest():
    cd = compute_domain("ns", "w", "u", RACK)
    assert changes([], cd) == (cd, [])
    assert changes([cd["metadata"]["name"]], cd) == (None, [])
    assert changes(["w-old", cd["metadata"]["name"]], cd) == (None, ["w-old"])
    assert changes(["w-old"], None) == (None, ["w-old"])


def _lws():
    t = {"spec": {"containers": [{"name": "vllm", "image": "v"}, {"name": "side", "image": "b",
                                                                     "resources": {"limits": {"cpu": "1"}}}],
                  "resourceClaims": [{"name": "mine", "resourceClaimTemplateName": "t"}]}}
    return {"kind": "LeaderWorkerSet", "metadata": {"name": "l"},
            "spec": {"leaderWorkerTemplate": {"size": 1, "leaderTemplate": copy.deepcopy(t),
                                              "workerTemplate": copy.deepcopy(t)}}}


def test_every_template_claims_the_channel_and_undo_takes_exactly_that_back():
    original = _lws()
    claim = channel_claim("l", RACK)
    placed = merge(original, targets.place_patch(original, "l", SEL, 4, TOL, group_size=2, claim=claim))
    for which in ("leaderTemplate", "workerTemplate"):
        pod = placed["spec"]["leaderWorkerTemplate"][which]["spec"]
        assert pod["resourceClaims"] == [{"name": "mine", "resourceClaimTemplateName": "t"}, claim]
        assert all({"name": "rackfit-imex-channel"} in c["resources"]["claims"] for c in pod["containers"])
    assert targets.place_patch(placed, "l", SEL, 4, TOL, group_size=2, claim=claim) is None

    # a move: the new ComputeDomain's claim replaces the old one's
    moved = placement(nvlinkDomain="nvidia.com/gpu.clique=u.2")
    other = channel_claim("l", moved)
    again = merge(placed, targets.place_patch(placed, "l", SEL, 4, TOL, group_size=2, claim=other))
    pod = again["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]
    assert pod["resourceClaims"] == [{"name": "mine", "resourceClaimTemplateName": "t"}, other]
    assert [c["resources"].get("claims") for c in pod["containers"]] == [[{"name": "rackfit-imex-channel"}]] * 2

    # single node now: no claim; then the undo gives back the user's manifest
    single = merge(again, targets.place_patch(again, "l", SEL, 4, TOL, group_size=2, claim=None))
    assert single["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["resourceClaims"] == [
        {"name": "mine", "resourceClaimTemplateName": "t"}]
    restored = merge(again, targets.unplace_patch(again))
    assert restored["spec"] == original["spec"]


def test_a_job_s_template_is_not_given_the_claim_its_pods_get_it_from_the_webhook():
    job = {"kind": "Job", "metadata": {"name": "j"}, "spec": {"suspend": True, "template": {"spec": {
        "containers": [{"name": "c", "image": "x"}]}}}}
    patch = targets.place_patch(job, "j", SEL, 4, TOL, claim=channel_claim("j", RACK))
    assert "resourceClaims" not in str(patch)  # a Job's template takes only scheduling fields
    pod = {"containers": [{"name": "c", "image": "x", "env": [{"name": "A", "value": "1"}]},
                          {"name": "d", "image": "y", "resources": {"claims": [{"name": "other"}]}}]}
    hints = pod_claim(pod, channel_claim("j", RACK))
    assert hints["resourceClaims"] == [channel_claim("j", RACK)]
    assert hints["containers"][0]["resources"]["claims"] == [{"name": "rackfit-imex-channel"}]
    assert hints["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert hints["containers"][1]["resources"]["claims"] == [{"name": "other"}, {"name": "rackfit-imex-channel"}]
    assert pod_claim({**pod, **hints}, channel_claim("j", RACK)) == {}  # never twice
    assert pod_claim(pod, None) == {}


def test_the_setting():
    assert OperatorConfig.from_env({}).compute_domains == "auto"
    assert OperatorConfig.from_env({"RACKFIT_COMPUTE_DOMAINS": "off"}).compute_domains == "off"
    try:
        OperatorConfig.from_env({"RACKFIT_COMPUTE_DOMAINS": "yes"})
    except ValueError as e:
        assert "RACKFIT_COMPUTE_DOMAINS" in str(e)
    else:
        raise AssertionError("accepted")


def test_the_driver_stand_in_publishes_what_the_driver_does():
    """The device class's CEL selector matches the published channel device (checked by hand here: the
    scheduler evaluates it in tests/e2e/test_computedomains.py)."""
    cls = sim.device_class()
    assert cls["metadata"]["name"] == "compute-domain-default-channel.nvidia.com"
    assert "device.attributes['compute-domain.nvidia.com'].type == 'channel'" in cls["spec"]["selectors"][0]["cel"][
        "expression"]
    s = sim.resource_slice("gb200-4x-000")
    assert s["spec"]["nodeName"] == s["spec"]["pool"]["name"] == "gb200-4x-000"
    assert [d["name"] for d in s["spec"]["devices"]] == ["channel-0", "daemon-0"]
    assert s["spec"]["devices"][0]["attributes"] == {"type": {"string": "channel"}, "id": {"int": 0}}
    cd = {**compute_domain("ns", "w", "u", RACK)}
    cd["metadata"] = {**cd["metadata"], "uid": "cd-uid"}
    rct = sim.claim_template(cd)
    assert rct["metadata"]["name"] == channel_claim("w", RACK)["resourceClaimTemplateName"]
    assert rct["metadata"]["ownerReferences"][0]["uid"] == "cd-uid"
    devices = rct["spec"]["spec"]["devices"]
    assert devices["requests"] == [{"name": "channel", "exactly": {
        "deviceClassName": "compute-domain-default-channel.nvidia.com"}}]
    assert devices["config"][0]["opaque"]["parameters"]["domainID"] == "cd-uid"
    assert yaml.safe_load(sim.CRD_FILE.read_text().split("---", 1)[1])["metadata"]["name"] == \
        "computedomains.resource.nvidia.com"
