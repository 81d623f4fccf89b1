"""Decisions in cycles, as kube-scheduler's and Kueue's scheduling cycles are.

A reconcile gathers what it reads (spec, config.json, target: I/O, in its own thread), then hands its
decision to the next cycle and waits for it. A cycle takes every workload waiting to be decided,
oldest first (creation time, then namespace and name), and decides them one after the other under one
hold of the ledger's lock, each seeing what those before it booked: a burst is decided in the order
it arrived, not in the order threads happened to take the lock. Statuses and target patches are then
written by each workload's own handler thread, concurrently, bounded by kopf's thread pool. The
queue policy (FIFO per instance type) and the fit policy (best fit) are the ledger's, unchanged; a
restart in the middle moves nothing, as placements reach status before targets are patched."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
Order = tuple[str, str, str]  # (creationTimestamp, namespace, name)


class Scheduler:
    def __init__(self, lock: Any, on_cycle: Callable[[int], None] = lambda n: None) -> None:
        self._lock, self._on_cycle = lock, on_cycle
        self._cv = threading.Condition()
        self._pending: list[tuple[Order, Callable[[], Any], Future]] = []
        self._thread: threading.Thread | None = None

    def decide(self, order: Order, fn: Callable[[], T]) -> T:
        """Run `fn` (deciding and booking one workload) in the next cycle, under the ledger's lock;
        its result, or its exception."""
        future: Future = Future()
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
                self._thread.start()
            self._pending.append((order, fn, future))
            self._cv.notify()
        return future.result()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                batch = sorted(self._pending, key=lambda p: p[0])
                self._pending = []
            with self._lock:
                for _, fn, future in batch:
                    try:
                        future.set_result(fn())
                    except BaseException as e:  # handed to the reconcile that asked
                        future.set_exception(e)
            self._on_cycle(len(batch))
