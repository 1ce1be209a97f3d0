"""shared/loops.py: a clean context per iteration, and the health record readiness reads."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from shared.loops import LoopHealth, every, isolated

_leak: contextvars.ContextVar[str | None] = contextvars.ContextVar("leak", default=None)


async def test_an_iteration_cannot_leak_context_into_the_next() -> None:
    async def dirty() -> str | None:
        seen = _leak.get()
        _leak.set("left behind")  # as a transaction that could not be closed would be
        return seen

    _leak.set("the loop's own")
    assert await isolated(dirty()) is None
    assert await isolated(dirty()) is None
    assert _leak.get() == "the loop's own"


async def test_a_loop_failing_longer_than_the_bound_or_stopped_is_unhealthy() -> None:
    health = LoopHealth(max_failing=0.0)
    health.started("flusher")
    health.started("consumer")
    await health.check()
    health.failed("flusher", RuntimeError("connection refused"))
    with pytest.raises(RuntimeError, match="flusher failing"):
        await health.check()
    health.ok("flusher")
    await health.check()
    health.stopped("consumer")
    with pytest.raises(RuntimeError, match="consumer stopped"):
        await health.check()


async def test_a_short_failure_is_not_unhealthy() -> None:
    health = LoopHealth(max_failing=30.0)
    health.started("flusher")
    health.failed("flusher", RuntimeError("one deadlock"))
    await health.check()


async def test_every_survives_a_failing_iteration_and_stops_when_asked() -> None:
    """One iteration raises: it is recorded once, the next runs clean, and `stop` ends the loop."""
    stop, health, calls = asyncio.Event(), LoopHealth(max_failing=-1), []
    reported = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="clean")

    async def work() -> None:
        calls.append(marker.get())
        reported.append(health.unhealthy())
        marker.set("dirty")  # must not leak into the next iteration
        if len(calls) == 1:
            raise RuntimeError("first iteration fails")
        if len(calls) == 3:
            stop.set()

    await asyncio.wait_for(every(0.0, work, name="probe", stop=stop, health=health), 30)
    assert calls == ["clean", "clean", "clean"]
    assert [list(r) for r in reported] == [[], ["probe"], []]  # failing after the first, ok again after
