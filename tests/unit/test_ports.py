"""The harness's free ports (harness/devcluster/ports.py): outside the kernel's ephemeral range, where an
outbound connection could take a port between its pick and the component's bind, and never twice."""

from __future__ import annotations

import socket

from devcluster import ports


def test_ports_are_below_the_ephemeral_range_and_never_repeat():
    low = ports._ephemeral_low()
    picked = [ports.free_port() for _ in range(300)]
    assert len(set(picked)) == len(picked)
    assert all(ports._LOWEST <= p < low for p in picked)


def test_a_port_in_use_is_not_handed_out(monkeypatch):
    real_draw = ports.secrets.randbelow
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        monkeypatch.setattr(ports, "_ephemeral_low", lambda: max(taken + 1, ports._LOWEST + 1000))
        draws = [taken - ports._LOWEST, taken - ports._LOWEST]  # the kernel's port, twice, then at random
        monkeypatch.setattr(ports.secrets, "randbelow", lambda span: draws.pop() if draws else real_draw(span))
        port = ports.free_port()
        assert port != taken and not draws
