"""shared.redis: every policy's client survives a Redis restart under it (its pooled connection dies)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from devtools.redis_server import RedisServer
from gateway.redis_guard import make_redis
from shared.redis import BACKGROUND, REDIS_UNAVAILABLE, REQUEST_PATH, RedisPolicy, redis_client

POLICIES = {
    "request-path": REQUEST_PATH,
    "background": BACKGROUND,
    "bounded-pool": dataclasses.replace(REQUEST_PATH, max_connections=2, pool_timeout=1.0),
}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


async def _restart_under(client: Redis, server: RedisServer) -> None:
    await client.set("before", "1")  # the pool now holds a connection to this Redis
    server.restart()


@pytest.mark.parametrize("policy", POLICIES.values(), ids=POLICIES.keys())
async def test_the_next_call_after_a_restart_succeeds(own_redis: RedisServer, policy: RedisPolicy) -> None:
    async with redis_client(own_redis.url, policy) as client:
        await _restart_under(client, own_redis)
        assert await client.set("after", "2")
        assert await client.get("after") == b"2"


async def test_the_gateway_client_survives_a_restart(own_redis: RedisServer) -> None:
    async with make_redis(own_redis.url, timeout=1.0) as client:
        await _restart_under(client, own_redis)
        assert await client.ping()


async def test_without_the_retry_the_restart_is_an_error(own_redis: RedisServer) -> None:
    """The control: redis-py's own default (from_url: no retry) fails the first call after a restart."""
    async with Redis.from_url(own_redis.url) as client:
        await _restart_under(client, own_redis)
        with pytest.raises(RedisConnectionError):
            await client.ping()
        assert await client.ping()  # the connection was replaced by that failure


async def test_a_stopped_redis_raises_one_of_redis_unavailable(own_redis: RedisServer) -> None:
    async with redis_client(own_redis.url, REQUEST_PATH) as client:
        own_redis.stop()
        with pytest.raises(REDIS_UNAVAILABLE):
            await client.ping()
        own_redis.start()
        assert await client.ping()
