"""Long-lived background loops: each iteration in a clean context, and a health record `/ready` reads.

A loop iteration runs in a task of its own with an EMPTY `contextvars.Context`: whatever an earlier
iteration left in a context variable (a database transaction that could not be closed, a request's
log context) cannot leak into the next one. An iteration that raises is logged once and the loop
goes on; `LoopHealth` remembers since when each loop has been failing, and whether it stopped, so
the readiness check can say "not ready" when a loop has failed for longer than `max_failing`
instead of answering 200 while nothing gets done.

`every` is the one periodic loop (view flusher, reconcile sweep, session purge, rate-limit sync):
wait, run one isolated iteration, log a failure once, start the next iteration clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger()


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def isolated(work: Awaitable[T]) -> T:
    """Run `work` in a task with an empty context and wait for it (cancelling us cancels it)."""

    async def run() -> T:
        return await work

    return await asyncio.create_task(run(), context=contextvars.Context())


@dataclass
class _Loop:
    failing_since: float | None = None
    last_error: str = ""
    running: bool = True


@dataclass
class LoopHealth:
    """What every background loop of a process reports: ok, failed, stopped."""

    max_failing: float = 30.0
    _loops: dict[str, _Loop] = field(default_factory=dict)

    def started(self, name: str) -> None:
        self._loops[name] = _Loop()

    def ok(self, name: str) -> None:
        loop = self._loops.setdefault(name, _Loop())
        loop.failing_since = None
        loop.last_error = ""

    def failed(self, name: str, error: BaseException) -> None:
        loop = self._loops.setdefault(name, _Loop())
        if loop.failing_since is None:
            loop.failing_since = time.monotonic()
        loop.last_error = repr(error)[:200]

    def stopped(self, name: str) -> None:
        self._loops.setdefault(name, _Loop()).running = False

    def unhealthy(self) -> dict[str, str]:
        """Loop name -> why it is unhealthy: stopped, or failing for longer than `max_failing`."""
        now = time.monotonic()
        bad = {}
        for name, loop in self._loops.items():
            if not loop.running:
                bad[name] = "stopped"
            elif loop.failing_since is not None and now - loop.failing_since > self.max_failing:
                bad[name] = f"failing for {now - loop.failing_since:.0f}s: {loop.last_error}"
        return bad

    async def check(self) -> None:
        """A readiness check: raises when a loop is unhealthy."""
        bad = self.unhealthy()
        if bad:
            raise RuntimeError("; ".join(f"{name} {why}" for name, why in sorted(bad.items())))


async def every(
    interval: float,
    work: Callable[[], Awaitable[object]],
    *,
    name: str,
    stop: asyncio.Event | None = None,
    health: LoopHealth | None = None,
) -> None:
    """Run `work()` every `interval` seconds until `stop` is set (or the task is cancelled).

    Each iteration runs `isolated` (a clean context); one that raises is logged once
    (`background_iteration_failed`, the loop's `name`), recorded in `health`, and the loop goes on.
    """
    stop = stop or asyncio.Event()
    while True:
        await wait_or_stop(stop, interval)
        if stop.is_set():
            return
        try:
            await isolated(work())
        except Exception as exc:
            if health is not None:
                health.failed(name, exc)
            log.warning("background_iteration_failed", loop=name, error=repr(exc))
        else:
            if health is not None:
                health.ok(name)
