"""What each placed workload really uses, beside rackfit's estimate (issue 21; docs/observed.md).

Always (Prometheus-native, no query of the operator's own): the pod watch feeds
rackfit_pod_workload_info{namespace,pod,workload} and the LLMWorkload watch the estimate gauges, so PromQL
joins dcgm-exporter's and the engines' series to workloads (the chart's recording rules and alert).

With a Prometheus URL (RACKFIT_PROMETHEUS_URL / --prometheus-url): `Observer.run`, one task on kopf's
event loop, sends ONE batched query for all workloads every interval (rackfit.observed.promql) and keeps
the answer; a per-workload timer (`write`, which kopf runs only on the active peer) writes
`status.observed` and the EstimateHolds condition from that answer, with no I/O of its own beyond its
status patch, and only when something changed. A Prometheus that is down or slow never slows placement:
the query runs on the loop with a time limit, failures back off (doubling up to 8 intervals), the last
answer is kept and the condition says since when Prometheus did not answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from rackfit.api import conditions as c
from rackfit.names import WORKLOAD_LABEL
from rackfit.observed import Observation, batched_query, estimate_figures, observed_view, parse_result, verdict
from rackfit.operator import kube, promquery
from rackfit.operator.metrics import Metrics

log = logging.getLogger(__name__)
MAX_BACKOFF = 8  # intervals
REFRESH = 10     # intervals: status.observed is rewritten at least this often while unchanged


@dataclass
class Observer:
    """The last answer of the batched query, shared by every workload's timer."""

    url: str
    interval: float
    window: str
    timeout: float
    metrics: Metrics | None = None
    observations: dict[tuple[str, str], Observation] = field(default_factory=dict)
    answered_at: float | None = None   # time.time() of the last answer
    failing_since: float | None = None
    error: str | None = None
    queries: int = 0
    failures: int = 0                  # in a row

    @property
    def query(self) -> str:
        return batched_query(self.window)

    def unreachable(self) -> str | None:
        """Why the last query failed, and since when; None while Prometheus answers."""
        if self.error is None:
            return None
        since = datetime.fromtimestamp(self.failing_since or time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"Prometheus at {self.url} not answering since {since}: {self.error}"

    def took(self, result: list[dict[str, Any]], now: float) -> None:
        """A successful answer replaces the last one."""
        obs = parse_result(result, self.window)
        if self.metrics is not None:
            for key in self.observations.keys() - obs.keys():
                self.metrics.set_observed_kv_tokens(*key, None)
            for key, o in obs.items():
                self.metrics.set_observed_kv_tokens(*key, o.kv_cache_tokens, o.source)
        self.observations, self.answered_at, self.error, self.failing_since = obs, now, None, None
        self.failures = 0

    def failed(self, error: str, now: float) -> float:
        """A failed query: keep the last answer; the delay before the next one (doubling, capped)."""
        self.failing_since = self.failing_since or now
        self.error = error
        self.failures += 1
        return self.interval * min(MAX_BACKOFF, 2 ** (self.failures - 1))

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                delay = self.interval
                self.queries += 1
                try:
                    result = await promquery.instant(session, self.url, self.query, self.timeout)
                except promquery.PrometheusError as e:
                    delay = self.failed(str(e), time.time())
                    if self.metrics is not None:
                        self.metrics.observed_queries.labels("error").inc()
                    log.warning(f"observed: {self.unreachable()}; next try in {delay:.0f}s")
                else:
                    self.took(result, time.time())
                    if self.metrics is not None:
                        self.metrics.observed_queries.labels("ok").inc()
                await asyncio.sleep(delay)


# --- Prometheus-native: what PromQL joins on (registered by handlers.register) ------------------
async def pod_workloads(namespace: str, name: str, labels: Mapping[str, str], spec: Mapping[str, Any],
                        status: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """rackfit_pod_workload_info for a labelled pod while it is bound and not finished."""
    workload = labels.get(WORKLOAD_LABEL)
    bound = spec.get("nodeName") and status.get("phase") not in ("Succeeded", "Failed")
    memo.ctx.metrics.pod_workload(namespace, name, workload if bound else None)


async def pod_gone(type: str, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        memo.ctx.metrics.pod_workload(namespace, name, None)


async def estimates(namespace: str, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any],
                    status: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """rackfit_workload_estimate_bytes and the KV token gauges from the workload's status.estimate
    (removed on delete by Metrics.forget_workload)."""
    if meta.get("deletionTimestamp"):
        return
    memo.ctx.metrics.set_estimate(namespace, name, estimate_figures(dict(spec), dict(status)))


# --- in the resource -------------------------------------------------------------------------------
async def start(memo: kopf.Memo, logger, **_: Any) -> None:
    """On startup: the batched query's task, on kopf's loop (handlers.register adds this only with a URL)."""
    observer: Observer = memo.ctx.observer
    memo.observer_task = asyncio.get_running_loop().create_task(observer.run())
    logger.info(f"observed: querying {observer.url} every {observer.interval:.0f}s (one query for all workloads)")


async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("observer_task")
    if task is not None:
        task.cancel()


def status_patch(spec: Mapping[str, Any], status: Mapping[str, Any], generation: int, observer: Observer,
                 key: tuple[str, str], now: float) -> dict[str, Any] | None:
    """The status to write for one workload from the observer's last answer; None when nothing changed."""
    figures = estimate_figures(dict(spec), dict(status))
    if figures is None:
        return None  # nothing estimated yet: nothing to compare
    obs = observer.observations.get(key)
    v = verdict(figures, obs, observer.unreachable())
    conds = list(status.get("conditions") or [])
    old = c.condition(conds, c.ESTIMATE_HOLDS)
    view = observed_view(obs, figures) if obs else None
    old_view = status.get("observed")
    same_condition = old is not None and (old.get("status"), old.get("reason"), old.get("message")) == \
        (v.status, v.reason, v.message)
    same_view = _figures(old_view) == _figures(view)
    fresh = not old_view or not view or _age(old_view, now) < REFRESH * observer.interval
    if same_condition and same_view and fresh:
        return None
    out: dict[str, Any] = {"conditions": c.set_condition(conds, c.ESTIMATE_HOLDS, v.status, v.reason, v.message,
                                                         generation)}
    if view is not None:
        out["observed"] = view
    return out


def _figures(view: Mapping[str, Any] | None) -> tuple:
    v = view or {}
    return tuple(v.get(k) for k in ("gpuMemoryBytes", "kvCacheTokens", "maxConcurrency", "source"))


def _age(view: Mapping[str, Any], now: float) -> float:
    try:
        at = datetime.strptime(view["observedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (KeyError, ValueError):
        return float("inf")
    return now - at


async def write(spec, status, meta, namespace: str, name: str, patch, memo: kopf.Memo, **_: Any) -> None:
    """The per-workload timer: status.observed and EstimateHolds from the last batched answer."""
    observer: Observer | None = memo.ctx.observer
    if observer is None or meta.get("deletionTimestamp"):
        return
    if observer.answered_at is None and observer.error is None:
        return  # the first query has not come back yet
    out = status_patch(spec, status, meta.get("generation") or 0, observer, (namespace, name), time.time())
    if out:
        # conditions are one list, which a merge patch replaces whole: written from this body only if
        # the object is still the version it was read at, so a Placed the reconcile wrote since is never
        # dropped (it was, under load, and the re-decisions that followed fed the backlog); on a conflict
        # the next tick writes from the fresher body
        await asyncio.to_thread(kube.patch_status, namespace, name, out, meta.get("resourceVersion"))
