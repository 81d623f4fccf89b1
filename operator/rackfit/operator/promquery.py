"""The one module that asks Prometheus (its HTTP API, /api/v1/query), with aiohttp on kopf's event loop:
an instant query with a time limit, so that a slow Prometheus never holds a handler thread."""

from __future__ import annotations

from typing import Any

import aiohttp


class PrometheusError(Exception):
    """No answer, a non-200 answer, or an answer that is not a successful instant vector."""


async def instant(session: aiohttp.ClientSession, url: str, expr: str, timeout: float) -> list[dict[str, Any]]:
    """The instant vector `expr` evaluates to now: Prometheus's `data.result`."""
    try:
        async with session.get(f"{url.rstrip('/')}/api/v1/query", params={"query": expr},
                               timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            body = await r.json(content_type=None)
            status = r.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        raise PrometheusError(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e
    if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise PrometheusError(f"HTTP {status}: {error or 'not a successful answer'}")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError(f"expected an instant vector, got {data.get('resultType')}")
    return data.get("result") or []
