"""The simulated fleet's Node manifests: labels from the catalog, cliques only on NVL72 racks."""

from __future__ import annotations

from collections import Counter

import pytest

from devcluster.fleet import DEFAULT_FLEET, build_nodes, node_names, parse_fleet
from rackfit.catalog import load_catalog
from rackfit.errors import CatalogError

CATALOG = load_catalog()
CLIQUE = "nvidia.com/gpu.clique"


def _by_type(nodes):
    groups: dict[str, list[dict]] = {}
    for node in nodes:
        groups.setdefault(node["metadata"]["labels"]["node.kubernetes.io/instance-type"], []).append(node)
    return groups


def test_default_fleet_is_two_gb200_racks_and_hgx_and_l40s_nodes():
    counts = Counter(n["metadata"]["labels"]["node.kubernetes.io/instance-type"] for n in build_nodes())
    assert counts == {"gb200-4x": 36, "gd-8xh100ib-i128": 16, "gd-8xh200ib-i128": 8, "gd-8xl40s-i128": 4}
    assert dict(counts) == DEFAULT_FLEET


@pytest.mark.parametrize("type_name", list(CATALOG.instance_types))
def test_labels_and_capacity_come_from_the_catalog(type_name):
    itype = CATALOG.get(type_name)
    (node,) = build_nodes({type_name: 1})
    labels, status = node["metadata"]["labels"], node["status"]

    assert labels["nvidia.com/gpu.product"] == itype.gpu.product
    assert labels["nvidia.com/gpu.memory"] == str(itype.gpu.memory_mib)
    assert labels["nvidia.com/gpu.count"] == str(itype.gpus_per_node)
    assert labels["kubernetes.io/hostname"] == node["metadata"]["name"]
    assert labels["topology.kubernetes.io/zone"]
    assert status["capacity"]["nvidia.com/gpu"] == str(itype.gpus_per_node)
    assert status["allocatable"] == status["capacity"]
    assert {"type": "Ready", "status": "True"}.items() <= status["conditions"][0].items()


@pytest.mark.parametrize("type_name", list(CATALOG.instance_types))
def test_clique_label_only_on_multi_node_nvlink_types(type_name):
    itype = CATALOG.get(type_name)
    nodes = build_nodes({type_name: 2})
    has_clique = [CLIQUE in n["metadata"]["labels"] for n in nodes]
    assert has_clique == [itype.nvlink_domain_gpus > itype.gpus_per_node] * 2
    assert (CLIQUE in nodes[0]["metadata"]["labels"]) == (type_name in {"gb200-4x", "gb300-4x"})


def test_each_rack_of_18_nodes_shares_one_clique():
    nodes = _by_type(build_nodes({"gb200-4x": 36, "gb300-4x": 20}))

    gb200 = Counter(n["metadata"]["labels"][CLIQUE] for n in nodes["gb200-4x"])
    assert sorted(gb200.values()) == [18, 18]
    gb300 = Counter(n["metadata"]["labels"][CLIQUE] for n in nodes["gb300-4x"])
    assert sorted(gb300.values()) == [2, 18]  # a partial second rack
    assert not set(gb200) & set(gb300)  # separate fabrics never share a clique

    first_rack = [n["metadata"]["labels"][CLIQUE] for n in nodes["gb200-4x"][:18]]
    assert len(set(first_rack)) == 1
    uuid, _, clique_id = first_rack[0].rpartition(".")
    assert len(uuid) == 36 and clique_id.isdigit()


def test_names_are_unique_and_stable():
    names = [n["metadata"]["name"] for n in build_nodes()]
    assert len(set(names)) == len(names) == 64
    assert names == node_names(DEFAULT_FLEET)
    assert build_nodes() == build_nodes()


def test_parse_fleet_reads_type_count_pairs():
    assert parse_fleet(" gb200-4x=36, gd-8xh100ib-i128=16 ,") == {"gb200-4x": 36, "gd-8xh100ib-i128": 16}
    assert parse_fleet({"gd-8xl40s-i128": "2"}) == {"gd-8xl40s-i128": 2}
    assert parse_fleet(None) == DEFAULT_FLEET


@pytest.mark.parametrize(("spec", "error", "match"), [
    ("gb200-4x", ValueError, "not TYPE=COUNT"),
    ("gb200-4x=two", ValueError, "must be an integer"),
    ("gb200-4x=0", ValueError, "at least 1"),
    ("", ValueError, "empty"),
    ("h100=8", CatalogError, "unknown instance type 'h100'"),
])
def test_parse_fleet_rejects_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        parse_fleet(spec)
