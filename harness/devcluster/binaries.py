"""Where the control-plane binaries built by `tools/k8s/build.sh` live, and a clear error when they don't.

Called by `ControlPlane`, the `python -m devcluster` commands and the e2e conftest
(which needs the matching kubectl). The cache path mirrors build.sh:
`$RACKFIT_K8S_BIN`, else `${XDG_CACHE_HOME:-~/.cache}/rackfit/k8s-<version>/bin`.
"""

from __future__ import annotations

import os
from pathlib import Path

# Must equal the k8s.io/kubernetes version in tools/k8s/go.mod (a unit test checks it).
K8S_VERSION = "v1.34.4"
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
BUILD_HINT = "run `make k8s-bin` (tools/k8s/build.sh; about 6 minutes cold on 2 cores)"


class BinariesMissing(RuntimeError):
    """A binary the local control plane needs has not been built."""


def bin_dir() -> Path:
    if override := os.environ.get("RACKFIT_K8S_BIN"):
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "rackfit" / f"k8s-{K8S_VERSION}" / "bin"


def require(*names: str) -> dict[str, Path]:
    """Paths of the named binaries; raises `BinariesMissing` listing every one that is absent."""
    where = bin_dir()
    paths = {name: where / name for name in names or CONTROL_PLANE}
    missing = [name for name, path in paths.items() if not os.access(path, os.X_OK)]
    if missing:
        raise BinariesMissing(f"missing {', '.join(missing)} in {where}: {BUILD_HINT}")
    return paths
