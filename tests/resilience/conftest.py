"""The resilience suite's own system: Redis, databases and processes that only these tests touch.

Faults here kill Redis (which runs without persistence, so a restart comes back empty), the canvas
service, the auth service and the relay; the shared `system` of tests/e2e must not feel that, and
these tests must not see its relay publish their events. So `stack` is a complete second system
(`tests.support.system.build_stack`): its own redis-server on a free port, its own auth and canvas
databases (SQLite files, or two new PostgreSQL databases with TEST_DB=postgres), the migrations
applied, then auth, canvas, relay and gateway as real processes logging at INFO into `stack.logs`.
Every test that stops something brings it back (`stack.ensure_running()`), whatever happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from tests.support.http import http
from tests.support.processes import url_of, web_process
from tests.support.system import Stack, build_stack

__all__ = ["http"]

TRUSTED_PROXY = "127.0.0.1"  # the peer the second gateway believes X-Forwarded-For from


@pytest.fixture(scope="session")
async def stack(data_dir: Path) -> AsyncIterator[Stack]:
    async with build_stack(data_dir, "resilience") as running:
        yield running


@pytest.fixture(scope="session")
def proxied_gateway(stack: Stack) -> Iterator[str]:
    """A second gateway in front of the same services that believes X-Forwarded-For from 127.0.0.1
    (as behind a load balancer): there a client's address is what the header says."""
    env = {**stack.env, "GATEWAY_TRUSTED_PROXIES": f'["{TRUSTED_PROXY}"]'}
    process = web_process("gateway-proxied", "gateway.app:app", env, stack.logs).start()
    try:
        yield url_of(process)
    finally:
        process.stop()


@pytest.fixture
async def stack_redis(stack: Stack) -> AsyncIterator[Redis]:
    """A client of the stack's Redis (not the suite-wide one the `redis` fixture gives); it reconnects
    at once when the tests restart Redis."""
    client = Redis.from_url(stack.redis.url, retry=Retry(NoBackoff(), 2, supported_errors=(ConnectionError,)))
    yield client
    await client.aclose()
