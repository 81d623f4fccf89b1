"""`wait_for`: poll a condition until it holds or a deadline passes; `wait_established`: CRDs served.

Used by `ControlPlane` (readiness of each component) and by the e2e tests, which must never
sleep a fixed time and hope.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold before the deadline; the message says what was awaited."""


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises `WaitTimeout` naming `what` after `timeout` seconds; the last exception the predicate
    raised (if any) is chained so the cause is visible in the traceback.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
            last_error = None
        except Exception as e:  # the predicate's failures are the signal we poll on
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{detail}") from last_error
        time.sleep(interval)


def wait_established(kubectl: Callable[..., subprocess.CompletedProcess], *names: str, timeout: float = 60) -> None:
    """Wait until the CRDs `names` (every CRD when none is named) are Established. Not `kubectl wait
    --for=condition=Established`: it gives up at once while a new CRD's status.conditions is still null, between
    its create and the apiextensions controller's first status update (kubectl/pkg/cmd/wait/condition.go,
    `unstructured.NestedSlice`: "accessor error: <nil> is of the type <nil>"), a window that load makes visible."""
    def established() -> bool:
        out = kubectl("get", "crd", *names, "-o", "json")
        if out.returncode:
            raise RuntimeError(out.stderr.strip())
        doc = json.loads(out.stdout)
        return all(any(c["type"] == "Established" and c["status"] == "True"
                       for c in (crd.get("status") or {}).get("conditions") or [])
                   for crd in doc.get("items", [doc]))
    wait_for(established, timeout, f"CRDs {', '.join(names) or '(all)'} Established", interval=0.25)
