"""The guard that keeps a down or stalled Redis off the gateway's hot path, and its client policy."""

from __future__ import annotations

import dataclasses
import time

import structlog
from redis.asyncio import Redis

from shared.redis import REQUEST_PATH, redis_client

log = structlog.get_logger()


def make_redis(url: str, timeout: float) -> Redis:
    """A client that fails within `timeout`: callers fall back instead of waiting (see shared.redis)."""
    return redis_client(
        url, dataclasses.replace(REQUEST_PATH, socket_timeout=timeout, connect_timeout=timeout)
    )


class RedisGuard:
    """After a Redis failure, report Redis unavailable for `cooldown` seconds.

    A stalled Redis then costs one timeout per cooldown instead of one per request; the next call
    after the cooldown probes it again.
    """

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        if self.available:
            log.warning("redis_unavailable", error=type(exc).__name__, bypass_seconds=self.cooldown)
        self._down_until = time.monotonic() + self.cooldown
