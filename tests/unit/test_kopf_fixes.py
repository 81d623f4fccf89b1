"""kopf's index-readiness toggles, with rackfit's fix: same behaviour, waiters woken once."""

from __future__ import annotations

import asyncio

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
