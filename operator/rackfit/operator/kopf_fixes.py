"""A fix to kopf, applied before it runs: index readiness in O(n), not O(n^2).

kopf holds every handler until all objects of all indexed kinds are indexed. Each object's worker
waits on one `ToggleSet`, and kopf adds and drops one toggle per object, each time waking every
waiting worker (`notify_all` in `kopf._cogs.aiokits.aiotoggles.ToggleSet.make_toggle/drop_toggle`):
with 5,000 objects that is 25 million wake-ups, and the operator measured 277 s before its first
decision on 1,000 nodes and 5,000 pods (bench/scale.py). The waiters only care when the set's
state flips, so only then are they woken. Checked by tests/unit/test_kopf_fixes.py.
"""

from __future__ import annotations

from kopf._cogs.aiokits import aiotoggles


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


def apply() -> None:
    aiotoggles.ToggleSet.make_toggle = _make_toggle
    aiotoggles.ToggleSet.drop_toggle = _drop_toggle
    aiotoggles.ToggleSet.drop_toggles = _drop_toggles
