"""The webhook server recycles its connections (startup.RecyclingWebhookServer): a response on a
connection older than `max_age` closes it, so the API server's next admission opens a new one to a live
replica."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp.web
import kopf

from rackfit.operator import startup
from rackfit.operator.startup import RecyclingWebhookServer


class _Transport:  # a connection (weak-referenceable, as asyncio's transports are)
    def get_extra_info(self, name: str):
        return None


def _request(transport: _Transport):
    async def text() -> str:
        return "{}"
    return SimpleNamespace(headers={}, transport=transport, match_info={"id": "mutate-pod"}, text=text)


def test_a_connection_older_than_max_age_is_closed_after_its_response(monkeypatch):
    clock = [100.0]  # the server's monotonic clock, moved by hand: the test does not race the machine's load
    monkeypatch.setattr(startup, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    server = RecyclingWebhookServer(port=1)
    server.max_age = 2.0

    async def fn(data, **_):
        return {"response": {"allowed": True}}

    async def run():
        old, new = _Transport(), _Transport()
        first = await server._serve(fn, _request(old))
        assert first.keep_alive is not False  # a young connection is kept
        clock[0] += 1.9
        young = await server._serve(fn, _request(old))
        assert young.keep_alive is not False
        clock[0] += 0.1
        aged = await server._serve(fn, _request(old))
        fresh = await server._serve(fn, _request(new))
        return aged, fresh
    aged, fresh = asyncio.run(run())
    assert aged.keep_alive is False  # "Connection: close"
    assert fresh.keep_alive is not False
    assert isinstance(server, kopf.WebhookServer)


def test_a_request_without_a_verdict_in_time_is_given_up():
    """A request still unanswered after the API server's timeout gets a 504, and holds no shutdown: aiohttp would
    otherwise wait up to 60 s for it on SIGTERM."""
    server = RecyclingWebhookServer(port=1)
    server.request_timeout = 0.05

    async def hangs(data, **_):
        await asyncio.sleep(3600)

    async def run():
        started = asyncio.get_running_loop().time()
        try:
            await server._serve(hangs, _request(_Transport()))
        except aiohttp.web.HTTPGatewayTimeout:
            return asyncio.get_running_loop().time() - started
    took = asyncio.run(run())
    assert took is not None and took < 1
