"""Free TCP ports on loopback: the harness's one helper for them (controlplane, addons, realnode, prometheus).

A port is picked below the kernel's ephemeral range. A port the kernel hands out for `bind(0)` comes from
that range, and so does the local port of every outbound connection: between the pick and the component's
own bind, the API server's connections to etcd (or any client) could take it, and the component then dies
with "address already in use" (seen in CI: kube-controller-manager on 127.0.0.1:49999).
"""

from __future__ import annotations

import secrets
import socket
import threading
from pathlib import Path

_LOWEST = 10000  # below this lie well-known and registered services that a developer's machine may run
_given: set[int] = set()  # never the same port twice from one process: the caller binds it later
_lock = threading.Lock()


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux's default 32768 where it cannot be read)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on loopback now, outside the ephemeral range, not handed out before by this process."""
    low = _ephemeral_low()
    span = low - _LOWEST
    if span < 1000:
        raise RuntimeError(f"the ephemeral port range starts at {low}: too few ports below it to pick from")
    with _lock:
        for _ in range(200):
            port = _LOWEST + secrets.randbelow(span)
            if port in _given:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free TCP port on 127.0.0.1 between {_LOWEST} and {low} after 200 tries")
