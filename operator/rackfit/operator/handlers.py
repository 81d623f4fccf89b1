"""The one place that registers the operator's kopf handlers, into a registry built at start from the
configuration (`register`), and runs kopf with the operator context as its memo (`run`, what
`rackfit operator` calls). Nothing registers or reads configuration at import."""

from __future__ import annotations

import threading
from typing import Any

import kopf

from rackfit.names import GROUP, KUEUE_QUEUE_LABEL, PLURAL, VERSION, WORKLOAD_LABEL
from rackfit.operator import admission, fleet, gating, kopf_fixes, kueue, observed, startup, targets, workloads
from rackfit.operator.config import OperatorConfig
from rackfit.operator.context import OperatorContext

LLMWORKLOADS = (GROUP, VERSION, PLURAL)
LABELLED = {WORKLOAD_LABEL: kopf.PRESENT}


def register(registry: kopf.OperatorRegistry, config: OperatorConfig, with_kueue: bool = False) -> None:
    r: dict[str, Any] = {"registry": registry}
    # a registry of our own starts without the login kopf's default one has: the official client's
    # (in-cluster service account, else kubeconfig)
    kopf.on.login(**r)(kopf.login_via_client)
    kopf.on.startup(**r)(startup.configure)
    # the fleet: held placements (nodes and pods come from fleet.start_informers, not kopf)
    kopf.index(*LLMWORKLOADS, **r)(fleet.placements)
    # pod gating: kopf watches labelled pods only (startup.configure)
    kopf.index("pods", labels=LABELLED, **r)(gating.gated_pods)
    kopf.index("pods", labels=LABELLED, **r)(gating.unschedulable_pods)
    kopf.index(*LLMWORKLOADS, **r)(gating.plan_envs)
    kopf.on.event("pods", labels=LABELLED, **r)(gating.ungate_new_pod)
    # LLMWorkloads
    for on in (kopf.on.resume, kopf.on.create):
        on(*LLMWORKLOADS, **r)(workloads.reconcile)
    kopf.on.update(*LLMWORKLOADS, field="spec", **r)(workloads.reconcile)
    kopf.timer(*LLMWORKLOADS, interval=config.replan_seconds, initial_delay=config.replan_seconds,
               **r)(workloads.replan)
    kopf.on.delete(*LLMWORKLOADS, **r)(workloads.release)
    if with_kueue:  # the admission check controller (kueue.py), where Kueue's CRDs are served
        kopf.index(*kueue.ADMISSION_CHECKS, **r)(kueue.our_checks)
        for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
            on(*kueue.ADMISSION_CHECKS, **r)(kueue.check_active)
        kopf.on.event(*kueue.WORKLOADS, **r)(kueue.workload_checks)
    # estimate beside observed (observed.py): the series PromQL joins on, always; status.observed and
    # EstimateHolds from one batched Prometheus query, with a Prometheus URL
    kopf.index("pods", labels=LABELLED, **r)(observed.pod_workloads)
    kopf.on.event("pods", labels=LABELLED, **r)(observed.pod_gone)
    kopf.index(*LLMWORKLOADS, **r)(observed.estimates)
    if config.prometheus_url:
        kopf.on.startup(**r)(observed.start)
        kopf.on.cleanup(**r)(observed.stop)
        kopf.timer(*LLMWORKLOADS, interval=config.observed_seconds, initial_delay=config.observed_seconds,
                   **r)(observed.write)
    # kopf refuses to start with admission handlers but no server: register them only when served
    if config.webhooks != "off":
        kopf.on.validate(*LLMWORKLOADS, id="validate-llmworkload", operations=["CREATE", "UPDATE"],
                         **r)(admission.validate_workload)
        # fail closed: a labelled pod is refused while no replica answers, never admitted ungated
        kopf.on.mutate("pods", id="mutate-pod", operations=["CREATE"], labels=LABELLED, ignore_failures=False,
                       **r)(gating.mutate_pod)
        if with_kueue:  # a LeaderWorkerSet that names a queue: its plan's topology and variables at creation
            lws = targets.adapter("LeaderWorkerSet")
            kopf.on.mutate(lws.group, lws.version, lws.plural, id="mutate-kueue-target", operations=["CREATE"],
                           labels={KUEUE_QUEUE_LABEL: kopf.PRESENT}, ignore_failures=True, **r)(kueue.mutate_target)


def run(standalone: bool, peering: str | None, liveness: str | None, verbose: bool) -> None:
    config = OperatorConfig.from_env()
    ctx = OperatorContext.build(config)  # a bad catalog file fails here, at start
    fleet.start_informers(ctx, threading.Event())  # the fleet in the ledger before kopf starts deciding
    ctx.kueue = kueue.enabled(config.kueue)  # API discovery, before the handlers are registered
    registry = kopf.OperatorRegistry()
    register(registry, config, with_kueue=ctx.kueue)
    kopf_fixes.apply()  # before kopf starts: index readiness in O(n) (kopf_fixes.py)
    kopf.configure(verbose=verbose)
    # cluster-wide always: the GPU inventory comes from Nodes and the Pods of every namespace
    kopf.run(registry=registry, memo=kopf.Memo(ctx=ctx), clusterwide=True, standalone=standalone,
             peering_name=peering, liveness_endpoint=liveness)
