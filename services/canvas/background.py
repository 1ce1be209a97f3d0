"""The loops every canvas web process runs beside its routes: view flusher, event consumer, sweep."""

from __future__ import annotations

import asyncio

import structlog
from redis.asyncio import Redis

from services.canvas import cascade, reconcile
from services.canvas.auth_client import AuthClient, AuthUnavailable
from services.canvas.read_cache import ReadCache
from services.canvas.settings import CanvasSettings
from services.canvas.views import ViewCounter
from shared.events import DEAD_LETTER_STREAM, USER_EVENTS_STREAM
from shared.streams import StreamConsumer, wait_or_stop

log = structlog.get_logger()

STOP_TIMEOUT = 10.0


def user_events_consumer(config: CanvasSettings, redis: Redis, cache: ReadCache) -> StreamConsumer:
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
    )


class Background:
    def __init__(
        self, config: CanvasSettings, redis: Redis, views: ViewCounter, cache: ReadCache, auth: AuthClient
    ) -> None:
        self.config = config
        self.views = views
        self.cache = cache
        self.auth = auth
        self.consumer = user_events_consumer(config, redis, cache)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="view-flusher"),
            asyncio.create_task(self.consumer.run(self._stop), name="user-events-consumer"),
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
        ]

    async def stop(self) -> None:
        """Stop the loops (cancelling any still busy after STOP_TIMEOUT), then flush the views once more."""
        self._stop.set()
        if self._tasks:
            _, busy = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT)
            for task in busy:
                task.cancel()
            await asyncio.gather(*busy, return_exceptions=True)
        try:
            await self.views.flush()
        except Exception:
            log.exception("final_view_flush_failed")

    async def _flush_loop(self) -> None:
        while True:
            await wait_or_stop(self._stop, self.config.flush_interval)
            if self._stop.is_set():
                return  # stop() flushes once more
            try:
                await self.views.flush()
            except Exception:
                log.exception("view_flush_failed")

    async def _reconcile_loop(self) -> None:
        while True:
            await wait_or_stop(self._stop, self.config.reconcile_interval)
            if self._stop.is_set():
                return
            try:
                await reconcile.sweep(
                    self.auth,
                    self.cache,
                    batch=self.config.reconcile_batch,
                    delete_batch=self.config.delete_batch,
                    max_unknown_fraction=self.config.reconcile_max_unknown_fraction,
                )
            except AuthUnavailable as exc:
                log.warning("reconcile_sweep_skipped", error=str(exc))
            except Exception:
                log.exception("reconcile_sweep_failed")
