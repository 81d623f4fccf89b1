"""The operator's side of issue 21 (rackfit.operator.observed, promquery, metrics): one query per interval
whatever the number of workloads, a slow or absent Prometheus that keeps the last answer and says so, the
status written only when something changed, and the series PromQL joins on."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from rackfit.api import conditions as c
from rackfit.observed import estimate_figures
from rackfit.observed.promql import FB_USED, VLLM
from rackfit.operator import promquery
from rackfit.operator.config import OperatorConfig, environment_help
from rackfit.operator.metrics import Metrics
from rackfit.operator.observed import Observer, status_patch

GIB = 1024**3
TRAIN_SPEC = {"workload": "training"}
TRAIN_STATUS = {"estimate": {"totalBytes": 40 * GIB, "layout": {"data": 1}}}


def _vector(*samples) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": list(samples)}}


def _fb(wl: str, mib: float, ns="ml") -> dict:
    return {"metric": {"namespace": ns, "workload": wl, "figure": FB_USED}, "value": [time.time(), str(mib)]}


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def test_one_batched_query_per_interval_for_a_thousand_workloads():
    queries: list[str] = []
    samples = [_fb(f"w{i}", 1024 + i) for i in range(1000)]
    third = asyncio.Event()

    async def handler(request):
        queries.append(request.query["query"])
        if len(queries) == 3:
            third.set()
        return web.json_response(_vector(*samples))

    async def go():
        runner, url = await _serve(handler)
        obs = Observer(url, interval=0.2, window="5m", timeout=10)
        task = asyncio.create_task(obs.run())
        await asyncio.wait_for(third.wait(), 60)   # three intervals, however slow the machine
        task.cancel()   # while the third answer is on its way: no fourth query can have started
        await runner.cleanup()
        return obs

    obs = asyncio.run(go())
    assert len(queries) == obs.queries == 3  # one per interval, never one per workload
    assert len(set(queries)) == 1 and "DCGM_FI_DEV_FB_USED[5m]" in queries[0]
    assert len(obs.observations) == 1000 and obs.observations[("ml", "w7")].gpu_memory_bytes == (1024 + 7) * 2**20
    assert obs.error is None


def test_a_slow_prometheus_times_out_and_keeps_the_last_answer():
    slow = {"on": False}

    async def handler(request):
        if slow["on"]:
            await asyncio.sleep(5)
        return web.json_response(_vector(_fb("job", 44 * 1024)))

    async def until(done, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        while not done():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    async def go():
        runner, url = await _serve(handler)
        metrics = Metrics(CollectorRegistry())
        obs = Observer(url, interval=0.2, window="1h", timeout=0.3, metrics=metrics)
        task = asyncio.create_task(obs.run())
        await until(lambda: obs.observations)
        slow["on"] = True
        started = time.monotonic()
        await until(lambda: obs.error)
        # given up at its timeout, long before the handler's 5 s answer, and this coroutine ran beside it
        assert time.monotonic() - started < 4
        task.cancel()
        await runner.cleanup()
        return obs, metrics

    obs, metrics = asyncio.run(go())
    assert obs.observations[("ml", "job")].gpu_memory_bytes == 44 * GIB  # kept
    assert obs.error and "not answering since" in obs.unreachable()
    text = generate_latest(metrics.registry).decode()
    assert 'rackfit_observed_queries_total{outcome="error"}' in text


def test_backoff_doubles_and_is_capped():
    obs = Observer("http://x", interval=10, window="1h", timeout=1)
    assert obs.failed("refused", 1000.0) == 10
    assert obs.failed("refused", 1010.0) == 20
    assert obs.failed("refused", 1030.0) == 40
    assert obs.failed("refused", 1070.0) == 80
    assert obs.failed("refused", 1150.0) == 80  # 8 intervals at most
    obs.took([], 5001.0)
    assert obs.error is None and obs.failing_since is None


def test_no_prometheus_at_all_is_an_error_not_a_crash():
    async def go():
        return await promquery.instant(__import__("aiohttp").ClientSession(), "http://127.0.0.1:1", "up", 1)

    with pytest.raises(promquery.PrometheusError):
        asyncio.run(go())


def _observer(*samples) -> Observer:
    obs = Observer("http://prom", interval=60, window="1h", timeout=5)
    obs.took(list(samples), time.time())
    return obs


def test_status_patch_flips_and_writes_only_on_change():
    key = ("ml", "job")
    now = time.time()
    obs = _observer(_fb("job", 30 * 1024))
    out = status_patch(TRAIN_SPEC, TRAIN_STATUS, 3, obs, key, now)
    cond = c.condition(out["conditions"], c.ESTIMATE_HOLDS)
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", c.WITHIN_ESTIMATE, 3)
    assert out["observed"]["gpuMemoryBytes"] == 30 * GIB
    written = {**TRAIN_STATUS, **out}
    assert status_patch(TRAIN_SPEC, written, 3, obs, key, now) is None  # nothing changed: no patch
    above = _observer(_fb("job", 44 * 1024))
    out = status_patch(TRAIN_SPEC, written, 3, above, key, now)
    cond = c.condition(out["conditions"], c.ESTIMATE_HOLDS)
    assert (cond["status"], cond["reason"]) == ("False", c.OBSERVED_ABOVE_ESTIMATE)
    # Prometheus then goes away: the observation stays, the condition says so
    above.failed("Connection refused", now)
    out2 = status_patch(TRAIN_SPEC, {**written, **out}, 3, above, key, now)
    cond = c.condition(out2["conditions"], c.ESTIMATE_HOLDS)
    assert cond["status"] == "False" and "not answering since" in cond["message"]
    assert out2["observed"]["gpuMemoryBytes"] == 44 * GIB


def test_status_patch_without_an_estimate_or_series():
    obs = _observer()
    assert status_patch(TRAIN_SPEC, {}, 1, obs, ("ml", "job"), time.time()) is None
    out = status_patch(TRAIN_SPEC, TRAIN_STATUS, 1, obs, ("ml", "job"), time.time())
    cond = c.condition(out["conditions"], c.ESTIMATE_HOLDS)
    assert (cond["status"], cond["reason"]) == ("Unknown", c.NO_OBSERVATIONS) and "observed" not in out


def test_metrics_join_series():
    m = Metrics(CollectorRegistry())
    m.pod_workload("ml", "job-0", "job")
    m.pod_workload("ml", "job-1", "job")
    m.pod_workload("ml", "job-1", None)
    serve = {"workload": "inference", "inference": {"engine": "vllm", "concurrency": 8, "contextLength": 4096}}
    m.set_estimate("ml", "chat", estimate_figures(serve, {"estimate": {"totalBytes": 70 * GIB,
                                                                         "kvCacheTokens": 50000}}))
    m.set_estimate("ml", "job", estimate_figures(TRAIN_SPEC, TRAIN_STATUS))
    obs = Observer("http://prom", 60, "1h", 5, metrics=m)
    obs.took([{"metric": {"namespace": "ml", "workload": "chat", "figure": VLLM, "kv_cache_size_tokens": "40000"},
               "value": [0, "1"]}], 0)
    text = generate_latest(m.registry).decode()
    assert 'rackfit_pod_workload_info{namespace="ml",pod="job-0",workload="job"} 1.0' in text
    assert 'pod="job-1"' not in text
    assert 'rackfit_workload_estimate_bytes{compare="framebuffer",namespace="ml",workload="job"}' in text
    assert 'rackfit_workload_estimate_bytes{compare="kv_cache",namespace="ml",workload="chat"}' in text
    assert 'rackfit_workload_required_kv_tokens{namespace="ml",workload="chat"} 32768.0' in text
    assert 'rackfit_workload_estimate_kv_tokens{namespace="ml",workload="chat"} 50000.0' in text
    assert ('rackfit_workload_observed_kv_tokens{namespace="ml",source="vllm:cache_config_info",workload="chat"} '
            '40000.0') in text
    m.forget_workload("ml", "chat")
    text = generate_latest(m.registry).decode()
    assert 'workload="chat"' not in text


def test_config_prometheus_settings():
    cfg = OperatorConfig.from_env({"RACKFIT_PROMETHEUS_URL": "http://prom:9090", "RACKFIT_OBSERVED_SECONDS": "30"})
    assert (cfg.prometheus_url, cfg.observed_seconds, cfg.observed_window) == ("http://prom:9090", 30.0, "1h")
    assert OperatorConfig.from_env({}).prometheus_url == ""
    assert "RACKFIT_PROMETHEUS_URL" in environment_help()


def test_the_timer_writes_only_onto_the_version_it_read(monkeypatch):
    """Conditions are one list and a merge patch replaces it whole: written from a stale body it
    dropped the Placed the reconcile had written since. The write carries the body's resourceVersion;
    a conflict is left to the next tick, never raised."""
    import kopf
    from kubernetes.client.exceptions import ApiException

    from rackfit.operator import kube, observed
    from rackfit.operator.context import OperatorContext

    sent = []

    class Api:
        def patch_namespaced_custom_object_status(self, group, version, ns, plural, name, body, **_):
            sent.append(body)
            if body["metadata"]["resourceVersion"] != "7":
                raise ApiException(status=409, reason="Conflict")
    monkeypatch.setattr(kube, "_api", lambda name: Api())
    ctx = OperatorContext.build(OperatorConfig(), CollectorRegistry())
    ctx.observer = _observer(_fb("job", 30 * 1024))
    for version in ("6", "7"):
        asyncio.run(observed.write(spec=TRAIN_SPEC, status=TRAIN_STATUS, meta={"generation": 3, "resourceVersion":
                                   version}, namespace="ml", name="job", patch=kopf.Patch(),
                                   memo=kopf.Memo(ctx=ctx)))
    assert [b["metadata"]["resourceVersion"] for b in sent] == ["6", "7"]
    assert c.condition(sent[1]["status"]["conditions"], c.ESTIMATE_HOLDS)["status"] == "True"
