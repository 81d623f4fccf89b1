"""kopf's index-readiness toggles, with rackfit's fix: same behaviour, waiters woken once."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import tomllib
from pathlib import Path

import pytest
from kopf._cogs.aiokits import aiotoggles

from rackfit.operator import kopf_fixes


def test_readiness_waiters_are_woken_when_the_set_turns_on_and_not_before():
    kopf_fixes.apply()

    async def scenario() -> tuple[int, bool]:
        ready = aiotoggles.ToggleSet(all)
        toggles = [await ready.make_toggle(name=str(i)) for i in range(500)]
        checks = 0
        original = ready.is_on

        def counting() -> bool:
            nonlocal checks
            checks += 1
            return original()
        waiters = [asyncio.create_task(ready.wait_for(True)) for _ in range(500)]
        await asyncio.sleep(0)
        ready.is_on = counting  # count what the waiters (and the drops) evaluate
        for t in toggles[:-1]:
            await ready.drop_toggle(t)
            await asyncio.sleep(0)  # as in kopf, other objects' workers run between two drops
        early = any(w.done() for w in waiters)
        await ready.drop_toggle(toggles[-1])
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        return checks, early

    checks, early = asyncio.run(scenario())
    assert not early  # nobody passes before the last object is indexed
    assert checks < 5_000  # O(n): 2 per drop plus one per waiter; kopf's own code makes ~250,000


def test_applies_to_the_installed_kopf_which_is_in_the_tested_range():
    version = importlib.metadata.version("kopf")
    assert kopf_fixes.refusal(version) is None, version
    assert kopf_fixes.apply() is True
    assert aiotoggles.ToggleSet.drop_toggle is kopf_fixes._drop_toggle


def test_pyproject_bounds_kopf_to_the_tested_range():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    (kopf,) = [d for d in pyproject["project"]["optional-dependencies"]["operator"] if d.startswith("kopf")]
    (low, high) = kopf_fixes.TESTED
    assert kopf.replace(" ", "") == f"kopf>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


@pytest.mark.parametrize("version", ["1.44.6", "1.46.0", "2.0.0", "1.46rc1", "unknown"])
def test_an_untested_kopf_is_left_alone_with_a_log_line(version, monkeypatch, caplog):
    originals = {name: getattr(aiotoggles.ToggleSet, name) for name in kopf_fixes.REPLACED}
    monkeypatch.setattr(aiotoggles.ToggleSet, "drop_toggle", _unpatched)
    with caplog.at_level(logging.WARNING, logger=kopf_fixes.__name__):
        assert kopf_fixes.apply(version) is False
    assert aiotoggles.ToggleSet.drop_toggle is _unpatched
    assert f"kopf {version}: not patching" in caplog.text and kopf_fixes.UPSTREAM in caplog.text
    assert {n: getattr(aiotoggles.ToggleSet, n) for n in ("make_toggle", "drop_toggles")} == \
        {n: originals[n] for n in ("make_toggle", "drop_toggles")}


async def _unpatched(self, toggle) -> None:
    pass


def test_a_toggle_set_without_what_the_fix_replaces_or_uses_is_refused():
    class Renamed:  # a kopf whose ToggleSet dropped drop_toggles
        def __init__(self, fn):
            self._condition, self._toggles = asyncio.Condition(), set()

        def is_on(self):
            return True

        async def make_toggle(self, *a, **k): ...
        async def drop_toggle(self, toggle): ...

    assert "drop_toggles" in kopf_fixes.refusal("1.45.2", Renamed)

    class NoCondition(Renamed):
        def __init__(self, fn):
            self._toggles = set()

        async def drop_toggles(self, toggles): ...

    assert "_condition" in kopf_fixes.refusal("1.45.2", NoCondition)
