"""The general per-client rate limit: Litestar's RateLimitConfig over a Redis store.

Litestar's stock RateLimitMiddleware keeps every request's timestamp in one JSON list per client
(decoded and re-encoded on each request: ~100 kB per request at 10,000 a minute), with two Redis
round trips behind one process-wide lock. `FixedWindowRateLimitMiddleware` keeps its configuration,
identifier hook and headers but counts per client in fixed windows: each process counts in memory
and merges its counts into Redis (INCRBY) every `SYNC_INTERVAL`, learning the other processes'
counts in return. With one gateway process the limit is exact; with several, a client can exceed it
by what the others counted in the last interval. No Redis call on the request path; while Redis is
down each process still enforces the limit on what it saw itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitConfig, RateLimitMiddleware
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from gateway.client_ip import identifier_for
from gateway.redis_guard import RedisGuard
from shared.errors import TooManyRequests
from shared.loops import every
from shared.redis import REDIS_UNAVAILABLE

if TYPE_CHECKING:
    from litestar.types import Message, Receive, Scope, Send

log = structlog.get_logger()

STORE_NAME = "rate_limit"
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


class FixedWindowRateLimitMiddleware(RateLimitMiddleware):
    def __init__(self, app: Any, config: RateLimitConfig) -> None:
        super().__init__(app, config)
        self.duration = DURATION_VALUES[self.unit]
        policy = f"{self.max_requests}; w={self.duration}"
        self.fixed_headers = [
            (config.rate_limit_policy_header_key.lower().encode(), policy.encode()),
            (config.rate_limit_limit_header_key.lower().encode(), str(self.max_requests).encode()),
        ]
        self.remaining_key = config.rate_limit_remaining_header_key.lower().encode()
        self.reset_key = config.rate_limit_reset_header_key.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        store = self.config.get_store_from_app(app)
        assert isinstance(store, RateCountStore)
        now = int(time.time())
        window = now // self.duration
        reset = (window + 1) * self.duration - now
        count = store.hit(self.get_identifier_for_request(app.request_class(scope)), window)
        headers = self._headers(count, reset)
        if count > self.max_requests:
            raise TooManyRequests(
                "Too many requests from this client",
                reset,
                headers={k.decode(): v.decode() for k, v in headers},
            )
        if headers:
            send = self._with_headers(send, headers)
        await self.app(scope, receive, send)

    def _headers(self, count: int, reset: int) -> list[tuple[bytes, bytes]]:
        if not self.config.set_rate_limit_headers:
            return []
        return [
            *self.fixed_headers,
            (self.remaining_key, str(max(0, self.max_requests - count)).encode()),
            (self.reset_key, str(reset).encode()),
        ]

    @staticmethod
    def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        return send_with_headers


def rate_limit_config(limit: int, unit: Any, trusted_proxies: list[str]) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=(unit, limit),
        identifier_for_request=identifier_for(frozenset(trusted_proxies)),
        middleware_class=FixedWindowRateLimitMiddleware,
        store=STORE_NAME,
    )
