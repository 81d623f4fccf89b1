"""`wait_for`: poll a condition until it holds or a deadline passes.

Used by `ControlPlane` (readiness of each component) and by the e2e tests, which must never
sleep a fixed time and hope.
"""

from __future__ import annotations

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
