"""Domain errors. Each carries the field path and what is allowed; the CLI and the operator map them once."""

from __future__ import annotations


class RackfitError(Exception):
    """Base of every error rackfit raises on purpose."""


class InvalidWorkload(RackfitError):
    """The spec is wrong. `errors` holds (field path, message) pairs, all of them at once."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in errors))


class CatalogError(RackfitError):
    """The catalog file is malformed or names something unknown."""
