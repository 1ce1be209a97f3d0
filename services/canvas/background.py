"""The loops every canvas web process runs beside its routes: view flusher, event consumer, sweep."""

from __future__ import annotations

import asyncio

import structlog
from redis.asyncio import Redis

from services.canvas import cascade, reconcile
from services.canvas.auth_client import AuthClient, AuthUnavailable
from services.canvas.read_cache import ReadCache
from services.canvas.settings import CanvasSettings
from services.canvas.streams import StreamConsumer
from services.canvas.view_counter import ViewCounter
from shared.events import DEAD_LETTER_STREAM, USER_EVENTS_STREAM
from shared.loops import LoopHealth, every, isolated

log = structlog.get_logger()

# Shutdown stays well inside a 30 s grace period: loops get STOP_TIMEOUT, the last flush its own bound.
STOP_TIMEOUT = 5.0
FINAL_FLUSH_TIMEOUT = 5.0
FLUSHER, CONSUMER, RECONCILER = "view-flusher", "user-events-consumer", "reconcile"


def user_events_consumer(
    config: CanvasSettings, redis: Redis, cache: ReadCache, health: LoopHealth | None = None
) -> StreamConsumer:
    return StreamConsumer(
        redis=redis,
        stream=USER_EVENTS_STREAM,
        group=cascade.CONSUMER_GROUP,
        name=config.consumer_name,
        handler=cascade.event_handler(cache, config.delete_batch),
        dead_letter_stream=DEAD_LETTER_STREAM,
        max_deliveries=config.max_deliveries,
        claim_idle_ms=config.claim_idle_ms,
        block_ms=config.consumer_block_ms,
        health=health,
    )


class Background:
    def __init__(
        self, config: CanvasSettings, redis: Redis, views: ViewCounter, cache: ReadCache, auth: AuthClient
    ) -> None:
        self.config = config
        self.views = views
        self.cache = cache
        self.auth = auth
        self.health = LoopHealth()
        self.consumer = user_events_consumer(config, redis, cache, self.health)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loops = {
            # stop() flushes once more after the flusher returns
            FLUSHER: every(
                self.config.flush_interval, self._flush, name=FLUSHER, stop=self._stop, health=self.health
            ),
            CONSUMER: self.consumer.run(self._stop),
            RECONCILER: every(self.config.reconcile_interval, self._sweep, name=RECONCILER, stop=self._stop),
        }
        for name, loop in loops.items():
            self.health.started(name)
            task = asyncio.create_task(loop, name=name)
            task.add_done_callback(self._ended)
            self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A loop only returns when asked to stop: any other end makes the process unready."""
        self.health.stopped(task.get_name())
        if not self._stop.is_set() and not task.cancelled() and task.exception() is not None:
            log.error("background_loop_died", loop=task.get_name(), error=repr(task.exception()))

    async def stop(self) -> None:
        """Stop the loops (cancelling any still busy after STOP_TIMEOUT), then flush the views once more."""
        self._stop.set()
        if self._tasks:
            _, busy = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        try:
            async with asyncio.timeout(FINAL_FLUSH_TIMEOUT):
                await isolated(self.views.flush())
        except Exception as exc:  # the batches stay pending in Redis: any process's next flush applies them
            log.warning("final_view_flush_failed", error=repr(exc))

    async def _flush(self) -> None:
        await self.views.flush()

    async def _sweep(self) -> None:
        try:
            await reconcile.sweep(
                self.auth,
                self.cache,
                batch=self.config.reconcile_batch,
                delete_batch=self.config.delete_batch,
                max_unknown_fraction=self.config.reconcile_max_unknown_fraction,
            )
        except AuthUnavailable as exc:  # expected while auth restarts: not a failure of this loop
            log.warning("reconcile_sweep_skipped", error=str(exc))
