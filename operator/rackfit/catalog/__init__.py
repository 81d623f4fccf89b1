"""The GPU instance catalog: loaded from `instances.yaml`, extended or overridden by a user file.

Pure: `load_catalog()` reads package data and optional YAML text; callers that read files pass text in.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rackfit.catalog.types import GPU, InstanceType
from rackfit.errors import CatalogError

__all__ = ["Catalog", "GPU", "InstanceType", "load_catalog", "builtin_catalog_text"]


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True)

    instance_types: dict[str, InstanceType]

    def get(self, name: str) -> InstanceType:
        try:
            return self.instance_types[name]
        except KeyError:
            raise CatalogError(f"unknown instance type {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self.instance_types)

    def by_product(self, product: str) -> InstanceType | None:
        """The first instance type whose GPU carries this `nvidia.com/gpu.product` value."""
        return next((t for t in self.instance_types.values() if t.gpu.product == product), None)


def builtin_catalog_text() -> str:
    return resources.files("rackfit.catalog").joinpath("instances.yaml").read_text()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_catalog(override_yaml: str | None = None) -> Catalog:
    """The built-in catalog, with `override_yaml` (same shape) merged over it entry by entry.

    An override may add instance types, change fields of existing ones (e.g. add `pricePerHour`),
    or set `replace: true` at the top to use only its own entries.
    """
    raw = yaml.safe_load(builtin_catalog_text())["instanceTypes"]
    if override_yaml:
        try:
            extra = yaml.safe_load(override_yaml) or {}
        except yaml.YAMLError as e:
            raise CatalogError(f"catalog override is not valid YAML: {e}") from None
        if not isinstance(extra, dict) or not isinstance(extra.get("instanceTypes", {}), dict):
            raise CatalogError("catalog override must be a mapping with `instanceTypes: {name: {...}}`")
        entries = extra.get("instanceTypes") or {}
        raw = dict(entries) if extra.get("replace") else _merge(raw, entries)
    types = {}
    for name, entry in raw.items():
        try:
            types[name] = InstanceType.model_validate({**entry, "name": name})
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise CatalogError(f"catalog entry instanceTypes.{name}: {problems}") from None
    if not types:
        raise CatalogError("the catalog has no instance types")
    return Catalog(instance_types=types)
