"""The general per-client rate limit on /api, counted in fixed windows over a Redis store.

Litestar's stock RateLimitMiddleware keeps every request's timestamp in one JSON list per client
(decoded and re-encoded on each request: ~100 kB per request at 10,000 a minute), with two Redis
round trips behind one process-wide lock, and builds a `Request` per call to identify the client.
`RateLimit` keeps its headers (`RateLimit-Policy`, `-Limit`, `-Remaining`, `-Reset`) and its store
class (`RedisStore`), is called by the /api front (`gateway/front.py`) with the ASGI scope, and
counts per client address in fixed windows: each process counts in memory
and merges its counts into Redis (INCRBY) every `SYNC_INTERVAL`, learning the other processes'
counts in return. With one gateway process the limit is exact; with several, a client can exceed it
by what the others counted in the last interval. No Redis call on the request path; while Redis is
down each process still enforces the limit on what it saw itself.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

import structlog
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from gateway.client_ip import client_ip
from gateway.redis_guard import RedisGuard
from shared.errors import TooManyRequests
from shared.loops import every
from shared.redis import REDIS_UNAVAILABLE

if TYPE_CHECKING:
    from litestar.types import Scope

log = structlog.get_logger()

SYNC_INTERVAL = 0.1


class RateCountStore(RedisStore):
    """Litestar's RedisStore plus per-window request counters merged into Redis in the background."""

    def __init__(
        self, redis: Redis, guard: RedisGuard, window_seconds: int, namespace: str = "gateway_rate"
    ) -> None:
        super().__init__(redis, namespace=namespace)
        self.guard = guard
        self.window_seconds = window_seconds
        # (identifier, window) -> [count known from Redis, local count not yet merged]
        self.counts: dict[tuple[str, int], list[int]] = {}

    def hit(self, identifier: str, window: int) -> int:
        """Count one request; the client's total in this window as far as this process knows."""
        entry = self.counts.get((identifier, window))
        if entry is None:
            entry = self.counts[(identifier, window)] = [0, 0]
        entry[1] += 1
        return entry[0] + entry[1]

    async def sync(self, now: float | None = None) -> None:
        current = int(time.time() if now is None else now) // self.window_seconds
        for key in [k for k in self.counts if k[1] < current]:
            del self.counts[key]
        pending = [(key, entry[1]) for key, entry in self.counts.items() if entry[1]]
        if not pending or not self.guard.available:
            return
        pipe = self._redis.pipeline(transaction=False)
        for (identifier, window), added in pending:
            redis_key = self._make_key(f"{identifier}:{window}")
            pipe.incrby(redis_key, added)
            pipe.expire(redis_key, self.window_seconds + 1)
        try:
            results = await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            self.guard.failed(exc)
            return
        for i, (key, added) in enumerate(pending):
            entry = self.counts.get(key)
            if entry is not None:
                entry[0] = int(results[2 * i])
                entry[1] -= added

    async def run(self) -> None:
        await every(SYNC_INTERVAL, self.sync, name="rate-limit-sync")


class RateLimit:
    """`limit` requests per client address per fixed window of the store's `window_seconds`, with the
    `RateLimit-*` headers Litestar's `RateLimitConfig` names by default on every answer."""

    def __init__(self, store: RateCountStore, limit: int, trusted_proxies: Collection[str]) -> None:
        self.store = store
        self.max_requests = limit
        self.duration = store.window_seconds
        self.trusted_proxies = frozenset(trusted_proxies)
        policy = f"{limit}; w={self.duration}"
        self.fixed_headers = [
            (b"ratelimit-policy", policy.encode()),
            (b"ratelimit-limit", str(limit).encode()),
        ]

    def admit(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """Count this request; its answer's headers, or `TooManyRequests` (429) over the limit."""
        now = int(time.time())
        window = now // self.duration
        reset = (window + 1) * self.duration - now
        count = self.store.hit(client_ip(scope, self.trusted_proxies), window)
        headers = [
            *self.fixed_headers,
            (b"ratelimit-remaining", str(max(0, self.max_requests - count)).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]
        if count > self.max_requests:
            raise TooManyRequests(
                "Too many requests from this client",
                reset,
                headers={k.decode(): v.decode() for k, v in headers},
            )
        return headers
