"""Operator start-up: kopf's settings, the webhook server, the metrics server (from `memo.ctx`)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

from rackfit.certs import write_serving_pair
from rackfit.names import ACTIVE_POD_FIELD_SELECTOR, WORKLOAD_LABEL
from rackfit.operator import computedomains
from rackfit.operator.config import OperatorConfig


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger, **_: Any) -> None:
    # progress in annotations, so that status stays exactly the CRD's schema
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rackfit.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="rackfit.io", key="last-handled-configuration")
    settings.posting.level = 20  # kopf.info/warn Events (Placed...) are posted; log lines are not (posting.loggers)
    # Sized for 5,000 GPU nodes and 50,000 pods (bench/scale.py measures it):
    # - No cap on per-object workers. kopf starts one per object of the initial listing, and each
    #   waits until every object of every indexed kind is indexed; a cap below the object count
    #   deadlocks the start (nolar/kopf#1243: a cap of 64 left clusters above 64 nodes unserved).
    #   Workers are coroutines that exit after `idle_timeout`, a few KB each.
    settings.queueing.worker_limit = None
    # - Threads for the synchronous handlers (reconcile, delete): they wait on the API server, and
    #   the ledger's lock serialises the decisions themselves.
    settings.execution.max_workers = 16
    # - The initial listing in pages, so neither side holds 50,000 pods in one response.
    settings.watching.chunk_size = 500
    # - kopf watches only the pods it gates (server-side label selector) and no nodes: the ledger's
    #   nodes and pods come from fleet.start_informers, which keeps no per-object state
    settings.watching.label_selectors["pods"] = WORKLOAD_LABEL
    settings.watching.field_selectors["pods"] = ACTIVE_POD_FIELD_SELECTOR
    settings.watching.server_timeout = 300
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
    # - A deleted LLMWorkload keeps its finalizer until its replan timer has exited. kopf gives the
    #   timer ten zero-time loop cycles; a tick mid-run (a synchronous handler in its thread) misses
    #   them, and kopf looks again only after `cancellation_polling`, 60 s by default
    #   (kopf/_core/engines/daemons.py stop_daemons): a delete then hung for a minute ("Timer
    #   'replan' is still exiting. The next check is in 60 seconds", an e2e teardown under load).
    #   Wait for the tick a few seconds instead, then look again every 2 s.
    settings.background.instant_exit_timeout = 5.0
    settings.background.cancellation_polling = 2.0
    # The replicas of one peering need distinct priorities: kopf pauses every operator that sees a
    # live peer of its own priority (0 for all by default), so two replicas would both stand by
    # (seen with the chart's 2 replicas on a real node). The older replica ranks higher: a replica
    # that starts later (a rollout, a replaced pod) stands by instead of taking over a working one.
    settings.peering.priority = -(time.time_ns() // 1000)
    ctx = memo.ctx
    configure_webhooks(settings, ctx.config)
    ctx.compute_domains = computedomains.enabled(ctx.config.compute_domains)
    ctx.metrics.serve(ctx.config.metrics_port)
    logger.info(f"rackfit operator: {len(ctx.catalog.instance_types)} instance types, "
                f"metrics on :{ctx.config.metrics_port}, ComputeDomains {'on' if ctx.compute_domains else 'off'}")


def configure_webhooks(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Serve the admission webhooks over TLS. In `url` mode kopf registers them itself (managed
    configurations named rackfit.io, removed again on a clean exit); in `service` mode the chart owns
    the configurations and the certificate."""
    if config.webhooks == "off":
        return
    host = config.webhook_host if config.webhooks == "url" else None
    cert_dir = config.webhook_cert_dir
    if cert_dir is None or not (cert_dir / "tls.crt").exists():
        cert_dir = Path(tempfile.mkdtemp(prefix="rackfit-webhook-"))
        write_serving_pair(cert_dir, [host or "localhost", "127.0.0.1", "localhost"])
    ca = cert_dir / "ca.crt"
    settings.admission.server = RecyclingWebhookServer(
        addr=host or "0.0.0.0", host=host, port=config.webhook_port, certfile=str(cert_dir / "tls.crt"),
        pkeyfile=str(cert_dir / "tls.key"), cafile=str(ca) if ca.exists() else None)
    if config.webhooks == "url":
        settings.admission.managed = "rackfit.io"
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per admission request is noise


class RecyclingWebhookServer(kopf.WebhookServer):
    """kopf's webhook server, whose connections live at most `max_age` seconds: a response on an older
    one says `Connection: close`. The API server keeps reusing a keep-alive connection to a replica
    that a rollout is stopping after its endpoint is gone (the preStop pause does not end it), and the
    request in flight when that replica closes it fails ("use of closed network connection", seen in
    tests/real during `helm upgrade`: Go's client retries no POST). Recycled, every connection is a
    fresh one to a live endpoint within `max_age`, well inside the preStop pause; costing one TLS
    handshake a connection every `max_age` seconds.

    A request is answered within `request_timeout` or given up with a 504: the API server stops waiting on an
    admission call after the webhook's timeoutSeconds (Kubernetes' default 10 s, which rackfit keeps), and on SIGTERM
    aiohttp holds the process for a request in progress up to its shutdown_timeout (60 s, web_runner.BaseRunner),
    longer than kubelet's grace period: one left hanging while kopf stops (seen in tests/e2e/test_contention.py's
    restart mid-burst) kept the operator from exiting for 60 s."""

    max_age = 2.0
    request_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._born: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    async def _serve(self, fn, request):  # type: ignore[override]  # kopf's, per request (kopf 1.45)
        try:
            response = await asyncio.wait_for(kopf.WebhookServer._serve(fn, request), self.request_timeout)
        except TimeoutError:
            raise aiohttp.web.HTTPGatewayTimeout(text="rackfit: no admission verdict in time") from None
        if request.transport is not None:
            born = self._born.setdefault(request.transport, time.monotonic())
            if time.monotonic() - born >= self.max_age:
                response.force_close()
        return response
