"""The instance catalog: invariants of instances.yaml and override files."""

from __future__ import annotations

import pytest
import yaml

from rackfit.catalog import builtin_catalog_text, load_catalog
from rackfit.errors import CatalogError

GUIDE_TYPES = {"gb300-4x", "gb200-4x", "b200-8x", "gd-8xh200ib-i128", "gd-8xh100ib-i128", "rtxp6000-8x",
               "gd-8xl40s-i128", "gd-8xl40-i128", "gd-1xgh200", "gd-8xa100-i128"}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_guide_instance_types_present(catalog):
    assert GUIDE_TYPES <= set(catalog.names())


def test_names_unique_in_file():
    # a YAML mapping silently keeps the last duplicate key: count the keys in the text
    names = [line.split(":")[0].strip() for line in builtin_catalog_text().splitlines()
             if line.startswith("  ") and not line.startswith("   ") and line.strip().endswith(":")]
    assert len(names) == len(set(names)) >= 10
    assert set(names) == set(yaml.safe_load(builtin_catalog_text())["instanceTypes"])


def test_entry_names_match_keys(catalog):
    assert all(name == t.name for name, t in catalog.instance_types.items())


def test_memory_positive_and_consistent(catalog):
    for t in catalog.instance_types.values():
        g = t.gpu
        assert g.memory_gb > 0 and g.memory_mib > 0 and g.memory_bytes > 0
        # HBM's nominal "GB" are binary: the label's MiB lie a little under memoryGB x 1024 (reserved), never above
        assert 0.9 * g.memory_gb * 1024 <= g.memory_mib <= g.memory_gb * 1024, t.name


def test_products_name_one_gpu(catalog):
    # several AWS sizes share a GPU (g4dn.xlarge, .12xlarge, .metal: Tesla-T4): one product, one GPU description
    by_product = {}
    for t in catalog.instance_types.values():
        assert by_product.setdefault(t.gpu.product, t.gpu) == t.gpu, t.name
        first = catalog.by_product(t.gpu.product)
        assert first.gpu == t.gpu and catalog.names().index(first.name) <= catalog.names().index(t.name)
    assert catalog.by_product("Tesla-T4").name == "g4dn.xlarge"
    assert catalog.by_product("NVIDIA-Nothing") is None


def test_nvlink_domain(catalog):
    for t in catalog.instance_types.values():
        assert t.nvlink_domain_gpus == 1 or t.nvlink_domain_gpus % t.gpus_per_node == 0, t.name
        assert t.gpus_per_node > 0
    assert catalog.get("gb200-4x").nodes_per_domain == 18
    assert catalog.get("gb300-4x").tensor_parallel_limit == 72
    assert catalog.get("b200-8x").nodes_per_domain == 1
    assert catalog.get("rtxp6000-8x").tensor_parallel_limit == 8  # PCIe: inside the host


def test_formats(catalog):
    a100 = catalog.get("gd-8xa100-i128").gpu
    assert "fp8" in a100.formats and "bf16" in a100.formats  # weight-only (vLLM's FP8 Marlin)
    assert "mxfp4" not in a100.formats and "nvfp4" not in a100.formats
    for t in catalog.instance_types.values():
        assert ("nvfp4" in t.gpu.formats) == (t.gpu.architecture == "blackwell"), t.name
        assert {"fp32", "fp16", "int8", "int4", "nf4"} <= t.gpu.formats
        # no bf16 tensor cores before Ampere (test_pre_ampere.py: vLLM casts to fp16 from 0.9.0)
        assert ("bf16" in t.gpu.formats) == (t.gpu.architecture not in ("volta", "turing")), t.name
    assert "fp8" in catalog.get("gd-8xl40s-i128").gpu.formats
    assert "fp8" in catalog.get("gd-8xh100ib-i128").gpu.formats


def test_gh200_host_memory_kept_apart(catalog):
    gh = catalog.get("gd-1xgh200").gpu
    assert gh.host_memory_gb == 480 and gh.host_memory_bytes == 480 * 10**9
    assert gh.memory_gb == 96 and gh.memory_mib == 97871  # capacity is the HBM only
    assert gh.memory_bytes < 0.25 * gh.host_memory_bytes
    others = [t for t in catalog.instance_types.values() if t.name != "gd-1xgh200"]
    assert all(t.gpu.host_memory_gb == 0 for t in others)


def test_no_builtin_prices(catalog):
    assert all(t.price_per_hour is None for t in catalog.instance_types.values())


def test_unknown_type_lists_known(catalog):
    with pytest.raises(CatalogError) as e:
        catalog.get("h100-1x")
    assert "h100-1x" in str(e.value) and "b200-8x" in str(e.value)


# --- overrides ----------------------------------------------------------------------------------------

NEW_TYPE = """
  my-h100:
    gpu: {model: H100, product: NVIDIA-H100-PCIe, memoryGB: 80, memoryMiB: 81559, architecture: hopper}
    gpusPerNode: 2
    nvlinkDomainGPUs: 1
    pricePerHour: 5.5
"""


def test_override_merges_price_and_keeps_rest(catalog):
    c = load_catalog("instanceTypes:\n  b200-8x:\n    pricePerHour: 42.5\n")
    b = c.get("b200-8x")
    assert b.price_per_hour == 42.5
    assert b.gpu == catalog.get("b200-8x").gpu and b.gpus_per_node == 8
    assert c.names() == catalog.names()


def test_override_merges_nested_gpu_field(catalog):
    c = load_catalog("instanceTypes:\n  gd-8xh100ib-i128:\n    gpu: {memoryMiB: 80000}\n")
    g = c.get("gd-8xh100ib-i128").gpu
    assert g.memory_mib == 80000 and g.product == "NVIDIA-H100-80GB-HBM3"


def test_override_adds_type(catalog):
    c = load_catalog("instanceTypes:" + NEW_TYPE)
    assert set(c.names()) == set(catalog.names()) | {"my-h100"}
    t = c.get("my-h100")
    assert t.price_per_hour == 5.5 and t.gpu.architecture == "hopper" and t.name == "my-h100"


def test_override_replace(catalog):
    c = load_catalog("replace: true\ninstanceTypes:" + NEW_TYPE)
    assert c.names() == ["my-h100"]


def test_override_replace_partial_entry_is_error():
    with pytest.raises(CatalogError) as e:
        load_catalog("replace: true\ninstanceTypes:\n  b200-8x:\n    pricePerHour: 1\n")
    assert "instanceTypes.b200-8x" in str(e.value)


def test_override_replace_with_nothing_is_error():
    with pytest.raises(CatalogError):
        load_catalog("replace: true\ninstanceTypes: {}\n")


@pytest.mark.parametrize("override,field", [
    ("instanceTypes:\n  b200-8x:\n    pricePerHour: -1\n", "pricePerHour"),
    ("instanceTypes:\n  b200-8x:\n    gpusPerNode: 0\n", "gpusPerNode"),
    ("instanceTypes:\n  b200-8x:\n    gpu: {architecture: kepler}\n", "architecture"),
    ("instanceTypes:\n  b200-8x:\n    gpu: {memoryGB: 0}\n", "memoryGB"),
    ("instanceTypes:\n  b200-8x:\n    pricePerHr: 3\n", "pricePerHr"),
])
def test_bad_override_names_entry(override, field):
    with pytest.raises(CatalogError) as e:
        load_catalog(override)
    assert "instanceTypes.b200-8x" in str(e.value) and field in str(e.value)


def test_bad_new_entry_named():
    with pytest.raises(CatalogError) as e:
        load_catalog("instanceTypes:\n  tiny:\n    gpusPerNode: 1\n")
    assert "instanceTypes.tiny" in str(e.value) and "gpu" in str(e.value)


@pytest.mark.parametrize("text", ["instanceTypes: [1, 2]", "- a\n- b", "instanceTypes: {a: [\n"])
def test_malformed_override(text):
    with pytest.raises(CatalogError):
        load_catalog(text)


@pytest.mark.parametrize("text", [None, "", "# nothing\n"])
def test_empty_override_is_builtin(text, catalog):
    assert load_catalog(text) == catalog
