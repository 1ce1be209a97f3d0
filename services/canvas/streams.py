"""Redis Streams consumer groups: at-least-once handling, reclaim of stale entries, dead letters.

A `StreamConsumer` reads its group's new entries (XREADGROUP `>`), hands each to the handler and
acknowledges it once the handler returns. An entry whose handler raised stays pending; when it has
been idle for `claim_idle_ms`, a consumer of the group (this one, or another one after this one
died) takes it over with XAUTOCLAIM and retries it. An entry delivered `max_deliveries` times without
success, or whose handler raised `PoisonMessage`, is copied to the dead-letter stream and
acknowledged, so the entries after it keep flowing. Handlers must therefore be idempotent.
A Redis outage is waited out with capped exponential backoff; the group is recreated if it vanished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.dead_letters import (
    CONSUMER,
    DEAD_LETTER_FIELDS,
    DELIVERIES,
    ERROR,
    SOURCE_ID,
    SOURCE_STREAM,
    Fields,
    dead_letters,
    replay_dead_letters,
)
from shared.loops import LoopHealth, isolated, wait_or_stop
from shared.redis import REDIS_UNAVAILABLE

log = structlog.get_logger()

__all__ = [  # the dead-letter format lives in shared.dead_letters; re-exported for this service's users
    "DEAD_LETTER_FIELDS",
    "ERROR",
    "SOURCE_ID",
    "Fields",
    "dead_letters",
    "replay_dead_letters",
]

Handler = Callable[[str, Fields], Awaitable[None]]


class PoisonMessage(Exception):
    """The entry can never be handled (malformed): dead-letter it now instead of retrying."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(kw_only=True)
class StreamConsumer:
    redis: Redis
    stream: str
    group: str
    name: str
    handler: Handler
    dead_letter_stream: str
    max_deliveries: int = 5
    claim_idle_ms: int = 30_000
    block_ms: int = 1_000
    batch_size: int = 10
    max_backoff: float = 10.0
    prune_idle_ms: int = 3_600_000
    # A failed delivery is retried in place (backoff from 0.1 s up to 2 s) for this long before it is
    # left pending for the reclaim: a deadlock victim, a dropped connection or a short outage is
    # handled again within seconds, not after `claim_idle_ms`. Kept below `claim_idle_ms`.
    retry_within: float = 15.0
    health: LoopHealth | None = None
    health_name: str = "user-events-consumer"
    _stop: asyncio.Event | None = None
    _poll_failed: bool = False

    async def ensure_group(self) -> None:
        """Create the group (reading the stream from its start) unless it exists."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def prune_idle_consumers(self) -> list[str]:
        """Remove the group's consumers that hold no entry and were idle for `prune_idle_ms`.

        Every process consumes under its own name, so each restart leaves a name behind.
        """
        removed = []
        consumers: Any = await self.redis.xinfo_consumers(self.stream, self.group)
        for info in consumers:
            name = _text(info["name"])
            if name != self.name and int(info["pending"]) == 0 and int(info["idle"]) >= self.prune_idle_ms:
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)
                removed.append(name)
        return removed

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set, surviving Redis outages and a lost group."""
        self._stop = stop
        backoff = 0.1
        group_ready = False
        while not stop.is_set():
            try:
                if not group_ready:
                    await self.ensure_group()
                    await self.prune_idle_consumers()
                    group_ready = True
                self._poll_failed = False
                await self.poll()
                if self.health is not None and not self._poll_failed:
                    self.health.ok(self.health_name)
                backoff = 0.1
                continue
            except ResponseError as exc:  # a RedisError too: before REDIS_UNAVAILABLE
                self._failed(exc)
                if "NOGROUP" not in str(exc):
                    log.warning("stream_consumer_error", stream=self.stream, error=repr(exc))
                group_ready = False
            except REDIS_UNAVAILABLE as exc:
                self._failed(exc)
                log.warning("stream_redis_unavailable", stream=self.stream, error=str(exc), retry_in=backoff)
            except Exception as exc:
                self._failed(exc)
                log.warning("stream_consumer_error", stream=self.stream, error=repr(exc))
            await wait_or_stop(stop, backoff)
            backoff = min(backoff * 2, self.max_backoff)

    async def poll(self, block_ms: int | None = None) -> int:
        """One round: retry or take over stale pending entries, then handle new ones. Returns the count."""
        handled = await self.reclaim()
        reply: Any = await self.redis.xreadgroup(
            self.group,
            self.name,
            {self.stream: ">"},
            count=self.batch_size,
            block=self.block_ms if block_ms is None else block_ms,
        )
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                await self._deliver(_text(entry_id), fields, deliveries=1)
                handled += 1
        return handled

    async def reclaim(self) -> int:
        """XAUTOCLAIM every entry pending longer than `claim_idle_ms` and deliver it again (Redis >= 7)."""
        start, handled = "0-0", 0
        while True:
            reply: Any = await self.redis.xautoclaim(
                self.stream, self.group, self.name, self.claim_idle_ms, start_id=start, count=self.batch_size
            )
            start, entries = _text(reply[0]), [(_text(i), f) for i, f in reply[1]]
            counts = await self._delivery_counts([entry_id for entry_id, _ in entries])
            for entry_id, fields in entries:  # Redis 7 drops entries trimmed while pending by itself
                await self._deliver(entry_id, fields, deliveries=counts.get(entry_id, 1))
                handled += 1
            if start == "0-0":
                return handled

    async def _delivery_counts(self, entry_ids: Sequence[str]) -> dict[str, int]:
        if not entry_ids:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in entry_ids:
                pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {_text(p["message_id"]): int(p["times_delivered"]) for reply in replies for p in reply}

    async def _deliver(self, entry_id: str, fields: Fields, *, deliveries: int) -> None:
        if deliveries > self.max_deliveries:
            await self._dead_letter(
                entry_id, fields, deliveries, "too many deliveries (the handler never returned)"
            )
            return
        try:
            await self._handle(entry_id, fields)
        except PoisonMessage as exc:
            await self._dead_letter(entry_id, fields, deliveries, f"poison: {exc}")
            return
        except Exception as exc:
            self._failed(exc)
            if deliveries >= self.max_deliveries:
                await self._dead_letter(entry_id, fields, deliveries, f"failed {deliveries} times: {exc!r}")
            else:
                log.warning(
                    "stream_entry_failed",
                    stream=self.stream,
                    entry_id=entry_id,
                    deliveries=deliveries,
                    error=repr(exc),
                )
            return
        await self.redis.xack(self.stream, self.group, entry_id)

    async def _handle(self, entry_id: str, fields: Fields) -> None:
        """The handler, in a clean context, retried in place with backoff for up to `retry_within`."""
        deadline = time.monotonic() + min(self.retry_within, self.claim_idle_ms / 2000)
        backoff = 0.1
        while True:
            try:
                await isolated(self.handler(entry_id, fields))
            except PoisonMessage:
                raise
            except Exception as exc:
                stopping = self._stop is not None and self._stop.is_set()
                if stopping or time.monotonic() + backoff > deadline:
                    raise
                log.info("stream_entry_retry", entry_id=entry_id, error=repr(exc), retry_in=backoff)
                if self._stop is not None:
                    await wait_or_stop(self._stop, backoff)
                else:
                    await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            return

    def _failed(self, exc: BaseException) -> None:
        self._poll_failed = True
        if self.health is not None:
            self.health.failed(self.health_name, exc)

    async def _dead_letter(self, entry_id: str, fields: Fields, deliveries: int, reason: str) -> None:
        letter = {
            **fields,
            SOURCE_STREAM: self.stream.encode(),
            SOURCE_ID: entry_id.encode(),
            ERROR: reason[:2000].encode(),
            DELIVERIES: str(deliveries).encode(),
            CONSUMER: self.name.encode(),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, letter)  # type: ignore[arg-type]
            pipe.xack(self.stream, self.group, entry_id)
            await pipe.execute()
        log.error("stream_entry_dead_lettered", stream=self.stream, entry_id=entry_id, reason=reason)
