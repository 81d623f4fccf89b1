"""Free TCP ports on loopback: the harness's one helper for them (controlplane, addons, realnode, prometheus)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
