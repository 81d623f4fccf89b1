"""Decisions in cycles (operator/scheduler.py): a burst is decided oldest first under one hold of the
lock, each decision sees those before it, and a decision's error reaches the reconcile that asked."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rackfit.operator.scheduler import Scheduler


def test_a_burst_is_decided_oldest_first_in_one_cycle_under_the_lock():
    lock = threading.RLock()
    cycles: list[int] = []
    decided: list[str] = []
    gate, taken = threading.Event(), threading.Event()
    scheduler = Scheduler(lock, cycles.append)

    def first() -> str:  # the first cycle holds until the burst has queued behind it
        taken.set()
        gate.wait(5)
        decided.append("first")
        return "first"

    def decision(name: str):
        def fn() -> str:
            assert lock._is_owned()  # under the ledger's lock
            decided.append(name)
            return name
        return fn
    names = [f"w{i}" for i in range(8)]
    with ThreadPoolExecutor(9) as pool:
        head = pool.submit(scheduler.decide, ("2026-01-01T00:00:00Z", "ns", "first"), first)
        assert taken.wait(5)  # the first cycle has taken it
        # arriving youngest first: the cycle still decides them oldest first
        futures = [pool.submit(scheduler.decide, (f"2026-01-01T00:00:{10 - i:02d}Z", "ns", n), decision(n))
                   for i, n in enumerate(names)]
        while len(scheduler._pending) < len(names):
            threading.Event().wait(0.01)
        gate.set()
        assert head.result(5) == "first" and [f.result(5) for f in futures] == names
    assert decided == ["first", *reversed(names)]
    assert cycles == [1, len(names)]


def test_a_decision_s_error_reaches_the_reconcile_that_asked_and_the_cycle_goes_on():
    scheduler = Scheduler(threading.RLock())

    def boom():
        raise ValueError("spec.model.preset: unknown")
    with pytest.raises(ValueError, match="spec.model.preset"):
        scheduler.decide(("t", "ns", "bad"), boom)
    assert scheduler.decide(("t", "ns", "good"), lambda: 42) == 42
