"""Every Redis client is built here, by a named policy; `REDIS_UNAVAILABLE` is what "Redis is down" means.

A policy says how long a caller may wait and how a failed command is retried:

- `REQUEST_PATH`: a request is waiting. 5 s socket and connect timeouts. A refused or broken
  connection is retried once at once (a pooled connection may predate a Redis restart); a timeout is
  not retried: the command may have run (INCR, a counted view) and a second wait doubles the stall.
- `BACKGROUND`: loops and command-line tools (relay, reconcile, dead letters). Longer socket timeout;
  timeouts are retried too, since their commands are idempotent or their consumers are.
- A service derives its own with `dataclasses.replace` (the gateway's sub-second budget, canvas's
  bounded pool); a blocking stream read (XREADGROUP BLOCK) needs `socket_timeout` above its block time.

Every policy pings a connection idle for `health_check_interval` seconds before using it, and
retries with redis-py's own `Retry` (one immediate retry), so the first call after a Redis restart
reconnects instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Redis refused, broke, stalled or answered with an error. `OSError` covers socket errors raised
# outside redis-py's wrappers and (Python 3.11+) the builtin `TimeoutError` asyncio raises.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (RedisError, OSError)


@dataclass(frozen=True, kw_only=True)
class RedisPolicy:
    socket_timeout: float | None
    connect_timeout: float | None
    retry_timeouts: bool = False
    health_check_interval: int = 30
    max_connections: int | None = None  # None: an unbounded pool
    pool_timeout: float | None = None  # with max_connections: wait this long for a free connection

    def retry(self) -> Retry:
        errors: tuple[type[RedisError], ...] = (RedisConnectionError,)
        if self.retry_timeouts:
            errors += (RedisTimeoutError,)
        return Retry(NoBackoff(), 1, supported_errors=errors)


REQUEST_PATH = RedisPolicy(socket_timeout=5.0, connect_timeout=5.0)
BACKGROUND = RedisPolicy(socket_timeout=30.0, connect_timeout=5.0, retry_timeouts=True)


def redis_client(url: str, policy: RedisPolicy) -> Redis:
    """A client for `url` under `policy`; close it with `aclose()` (or `async with`)."""
    options = {
        "socket_timeout": policy.socket_timeout,
        "socket_connect_timeout": policy.connect_timeout,
        "retry": policy.retry(),
        "health_check_interval": policy.health_check_interval,
    }
    pool: ConnectionPool
    if policy.max_connections is None:
        pool = ConnectionPool.from_url(url, **options)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=policy.max_connections, timeout=policy.pool_timeout, **options
        )
    return Redis.from_pool(pool)
