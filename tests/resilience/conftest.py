"""The resilience suite's own system: Redis, databases and processes that only these tests touch.

Faults here kill Redis (which runs without persistence, so a restart comes back empty), the canvas
service, the auth service and the relay; the shared `system` of tests/e2e must not feel that, and
these tests must not see its relay publish their events. So `stack` is a complete second system:
its own redis-server on a free port, its own auth and canvas databases (SQLite files, or two new
PostgreSQL databases with TEST_DB=postgres), the migrations applied, then auth, canvas, relay and
gateway as real processes logging at INFO into `stack.logs`. Every test that stops something brings
it back (`stack.ensure_running()`), whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from bench.databases import RawDB
from devtools.migrate import APPS, migrate
from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import RedisServer, free_port
from tests.conftest import TEST_POSTGRES_URL
from tests.e2e.conftest import System
from tests.gateway.support import ALLOWED_ORIGIN, http

__all__ = ["http"]

READ_TIMEOUT = 3.0  # the gateway's upstream read budget (a hung service answers 504 after this)
REDIS_TIMEOUT = 0.15  # the gateway's Redis budget (its default)
CIRCUIT_COOLDOWN = 2
CLIENT_LIMIT = 30  # failed logins per client address and window (API default 100: fewer hash checks)
TRUSTED_PROXY = "127.0.0.1"  # the peer the second gateway believes X-Forwarded-For from


@dataclass
class Stack(System):
    """The e2e System's processes plus what the fault tests reach for directly."""

    redis: RedisServer = field(kw_only=True)
    auth_url: str = field(kw_only=True)
    canvas_url: str = field(kw_only=True)
    env: dict[str, str] = field(kw_only=True)
    logs: Path = field(kw_only=True)
    auth_db: RawDB = field(kw_only=True)
    canvas_db: RawDB = field(kw_only=True)
    tokens: list[str] = field(default_factory=list)  # every session token issued through the helpers

    def ensure_running(self) -> None:
        if self.redis.process is None or self.redis.process.poll() is not None:
            self.redis.start()
        super().ensure_running()

    def kill_redis(self) -> None:
        """SIGKILL: no shutdown, and (no persistence) every key is gone when it comes back."""
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait()
        self.redis.process = None


def web_process(
    name: str, app: str, port: int, env: dict[str, str], logs: Path, *, workers: int = 1
) -> Process:
    health = f"http://127.0.0.1:{port}/health"
    return Process(name, uvicorn_cmd(app, port, workers=workers), env, logs / f"{name}.log", health)


def _gateway_env(auth_url: str, canvas_url: str) -> dict[str, str]:
    return {
        "GATEWAY_AUTH_URL": auth_url,
        "GATEWAY_CANVAS_URL": canvas_url,
        "GATEWAY_ALLOWED_ORIGINS": f'["{ALLOWED_ORIGIN}"]',
        "GATEWAY_CIRCUIT_COOLDOWN": str(CIRCUIT_COOLDOWN),
        "GATEWAY_REDIS_COOLDOWN": "0.2",
        "GATEWAY_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
        "GATEWAY_READ_TIMEOUT": str(READ_TIMEOUT),
        "GATEWAY_RATE_LIMIT": "1000000000",  # the load run comes from one address; the limiter still runs
    }


async def _databases(data_dir: Path, name: str) -> tuple[dict[str, str], list[str]]:
    """Database URLs for both services (and the PostgreSQL databases to drop afterwards)."""
    if os.environ.get("TEST_DB", "sqlite") != "postgres":
        return {app: f"sqlite:///{data_dir}/{name}-{app}.db" for app in APPS}, []
    names = {app: f"cv_res_{uuid.uuid4().hex[:10]}_{app}" for app in APPS}
    conn = await asyncpg.connect(TEST_POSTGRES_URL, timeout=5)
    try:
        for database in names.values():
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    base = TEST_POSTGRES_URL.rsplit("/", 1)[0]
    return {app: f"{base}/{name}" for app, name in names.items()}, list(names.values())


async def _drop(names: list[str]) -> None:
    if not names:
        return
    conn = await asyncpg.connect(TEST_POSTGRES_URL, timeout=5)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def build_stack(
    data_dir: Path, name: str, *, workers: int = 1, appendonly: bool = False
) -> AsyncIterator[Stack]:
    """A complete system of its own: Redis, both databases migrated, auth, canvas, relay, gateway.

    `workers` uvicorn workers per web process and a Redis with append-only persistence reproduce
    what docker-compose starts (2 workers, AOF); the default is the lighter single-worker stack.
    """
    root = data_dir / name
    urls, pg_names = await _databases(data_dir, name)
    redis = RedisServer(root / "redis", appendonly=appendonly).start()
    ports = {name: free_port() for name in ("auth", "canvas", "gateway")}
    auth_url, canvas_url, gateway_url = (
        f"http://127.0.0.1:{ports[n]}" for n in ("auth", "canvas", "gateway")
    )
    env = {
        "REDIS_URL": redis.url,
        "AUTH_DATABASE_URL": urls["auth"],
        "CANVAS_DATABASE_URL": urls["canvas"],
        "LOG_LEVEL": "INFO",
        "AUTH_THROTTLE_CLIENT_LIMIT": str(CLIENT_LIMIT),
        "CANVAS_AUTH_URL": auth_url,
        "CANVAS_FLUSH_INTERVAL": "0.2",
        "CANVAS_CONSUMER_BLOCK_MS": "200",
        "CANVAS_CLAIM_IDLE_MS": "2000",
        **_gateway_env(auth_url, canvas_url),
    }
    await asyncio.gather(*(asyncio.to_thread(migrate, [app], env) for app in APPS))
    logs = root / "logs"
    auth_db, canvas_db = await RawDB(urls["auth"]).open(2), await RawDB(urls["canvas"]).open(2)
    running = Stack(
        gateway_url,
        web_process("auth", "services.auth.app:app", ports["auth"], env, logs, workers=workers),
        web_process("canvas", "services.canvas.app:app", ports["canvas"], env, logs, workers=workers),
        Process("relay", [sys.executable, "-m", "services.auth.relay"], env, logs / "relay.log"),
        web_process("gateway", "gateway.app:app", ports["gateway"], env, logs, workers=workers),
        redis=redis,
        auth_url=auth_url,
        canvas_url=canvas_url,
        env=env,
        logs=logs,
        auth_db=auth_db,
        canvas_db=canvas_db,
    )
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in running.processes))
        yield running
    finally:
        for process in reversed(running.processes):
            process.stop()
        redis.stop()
        await auth_db.close()
        await canvas_db.close()
        await _drop(pg_names)


@pytest.fixture(scope="session")
async def stack(data_dir: Path) -> AsyncIterator[Stack]:
    async with build_stack(data_dir, "resilience") as running:
        yield running


@pytest.fixture(scope="session")
def proxied_gateway(stack: Stack) -> Iterator[str]:
    """A second gateway in front of the same services that believes X-Forwarded-For from 127.0.0.1
    (as behind a load balancer): there a client's address is what the header says."""
    port = free_port()
    env = {**stack.env, "GATEWAY_TRUSTED_PROXIES": f'["{TRUSTED_PROXY}"]'}
    process = web_process("gateway-proxied", "gateway.app:app", port, env, stack.logs).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@pytest.fixture
async def stack_redis(stack: Stack) -> AsyncIterator[Redis]:
    """A client of the stack's Redis (not the suite-wide one the `redis` fixture gives); it reconnects
    at once when the tests restart Redis."""
    client = Redis.from_url(stack.redis.url, retry=Retry(NoBackoff(), 2, supported_errors=(ConnectionError,)))
    yield client
    await client.aclose()
