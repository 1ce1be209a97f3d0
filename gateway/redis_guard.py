"""The gateway's Redis client and the guard that keeps a down or stalled Redis off the hot path."""

from __future__ import annotations

import asyncio
import time

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisError

log = structlog.get_logger()

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def make_redis(url: str, timeout: float) -> Redis:
    """A client that fails within `timeout`: callers fall back instead of waiting.

    A refused or broken connection is retried once at once (a pooled connection may predate a
    Redis restart); a timeout is not retried.
    """
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(ConnectionError,)),
        health_check_interval=0,
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
