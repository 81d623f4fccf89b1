"""A fix to kopf, applied before it runs: index readiness in O(n), not O(n^2).

kopf holds every handler until all objects of all indexed kinds are indexed. Each object's worker
waits on one `ToggleSet`, and kopf adds and drops one toggle per object, each time waking every
waiting worker (`notify_all` in `kopf._cogs.aiokits.aiotoggles.ToggleSet.make_toggle/drop_toggle`):
with 5,000 objects that is 25 million wake-ups, and the operator measured 277 s before its first
decision on 1,000 nodes and 5,000 pods (bench/scale.py). The waiters only care when the set's
state flips, so only then are they woken. Checked by tests/unit/test_kopf_fixes.py.

`ToggleSet` is private to kopf, so the fix applies only to the kopf releases it was tested on
(`TESTED`, the bound on kopf in pyproject.toml) and only when the methods and attributes it replaces
and uses are there; otherwise `apply()` logs why and leaves kopf as it is (correct, but slow to
start on large clusters). The upstream report, ready to file: docs/upstream/kopf-index-readiness.md.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import logging

from kopf._cogs.aiokits import aiotoggles

log = logging.getLogger(__name__)

# kopf releases (major, minor) this fix was tested on, lowest included, highest excluded: kopf 1.45.x.
# pyproject.toml bounds kopf to the same range; widen both after re-running tests/unit/test_kopf_fixes.py.
TESTED = ((1, 45), (1, 46))
REPLACED = ("make_toggle", "drop_toggle", "drop_toggles")
UPSTREAM = "docs/upstream/kopf-index-readiness.md"


async def _make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggles(self, toggles) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
    await _drop_toggles(self, [toggle])


def _release(version: str) -> tuple[int, int] | None:
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def refusal(version: str, toggle_set: type = aiotoggles.ToggleSet) -> str | None:
    """Why the fix does not apply to this kopf (its version, its ToggleSet), or None when it does."""
    low, high = TESTED
    release = _release(version)
    if release is None or not low <= release < high:
        return f"tested on kopf {low[0]}.{low[1]} to before {high[0]}.{high[1]} only"
    for name in REPLACED:
        if not inspect.iscoroutinefunction(getattr(toggle_set, name, None)):
            return f"ToggleSet.{name} is not the coroutine it replaces"
    if not callable(getattr(toggle_set, "is_on", None)):
        return "ToggleSet.is_on is missing"
    try:
        probe = toggle_set(all)
    except Exception as e:  # any failure means: not the class the fix knows
        return f"ToggleSet(all) failed: {e!r}"
    if not isinstance(getattr(probe, "_condition", None), asyncio.Condition):
        return "ToggleSet has no asyncio.Condition `_condition`"
    if not isinstance(getattr(probe, "_toggles", None), set):
        return "ToggleSet has no set `_toggles`"
    if "condition" not in inspect.signature(aiotoggles.Toggle).parameters:
        return "Toggle takes no `condition`"
    return None


def apply(version: str | None = None) -> bool:
    """Patch kopf's ToggleSet if this kopf is one the fix knows; else log why and patch nothing."""
    version = importlib.metadata.version("kopf") if version is None else version
    why = refusal(version)
    if why is not None:
        log.warning("kopf %s: not patching its index-readiness ToggleSet (%s); the operator's first decision "
                    "on a large cluster waits O(n^2) wake-ups (%s)", version, why, UPSTREAM)
        return False
    aiotoggles.ToggleSet.make_toggle = _make_toggle
    aiotoggles.ToggleSet.drop_toggle = _drop_toggle
    aiotoggles.ToggleSet.drop_toggles = _drop_toggles
    log.debug("kopf %s: index-readiness ToggleSet patched (wakes waiters only when the set flips)", version)
    return True
