"""The whole system as real processes: auth, canvas, the outbox relay and the gateway.

`System` is what the e2e suite runs on the root conftest's environment (REDIS_URL, the database URLs,
INTERNAL_SECRET); `Stack` (`build_stack`) is a complete second system of its own (its own Redis and
databases) for the resilience suite, whose faults the e2e suite must not feel. Tests talk to `url`
(the gateway) and may stop, kill or restart any process; `ensure_running()` brings stopped ones back.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devtools.databases import RawDB
from devtools.migrate import APPS, migrate
from devtools.processes import Process
from devtools.redis_server import RedisServer, free_port
from tests.support import databases
from tests.support.http import ALLOWED_ORIGIN
from tests.support.processes import url_of, web_process

CIRCUIT_COOLDOWN = 2
READ_TIMEOUT = 3.0  # the gateway's upstream read budget (a hung service answers 504 after this)
REDIS_TIMEOUT = 0.15  # the gateway's Redis budget (its default)
CLIENT_LIMIT = 30  # failed logins per client address and window (API default 100: fewer hash checks)


@dataclass
class System:
    url: str  # the gateway: what clients talk to
    auth: Process
    canvas: Process
    relay: Process
    gateway: Process
    metrics_url: str = field(default="", kw_only=True)  # the gateway's own /metrics listener
    gateway_env: dict[str, str] = field(default_factory=dict, kw_only=True)  # to start another one

    @property
    def processes(self) -> list[Process]:
        return [self.auth, self.canvas, self.relay, self.gateway]

    def ensure_running(self) -> None:
        for process in self.processes:
            if not process.running:
                process.start()


def gateway_env(auth_url: str, canvas_url: str) -> dict[str, str]:
    """A gateway in front of these services, with the tests' origin and short fault budgets."""
    return {
        "GATEWAY_AUTH_URL": auth_url,
        "GATEWAY_CANVAS_URL": canvas_url,
        "GATEWAY_ALLOWED_ORIGINS": f'["{ALLOWED_ORIGIN}"]',
        "GATEWAY_CIRCUIT_COOLDOWN": str(CIRCUIT_COOLDOWN),
        "GATEWAY_REDIS_COOLDOWN": "0.2",
        "GATEWAY_READ_TIMEOUT": str(READ_TIMEOUT),
    }


def gateway_process(name: str, logs: Path, env: dict[str, str]) -> tuple[Process, str]:
    """A gateway process (not started) with its own metrics listener: the process, its metrics URL."""
    metrics_port = free_port()
    process = web_process(name, "gateway.app:app", {**env, "GATEWAY_METRICS_PORT": str(metrics_port)}, logs)
    return process, f"http://127.0.0.1:{metrics_port}/metrics"


def system_of(logs: Path) -> System:
    """The e2e system (not started), on the environment the root conftest prepared."""
    auth = web_process("auth", "services.auth.app:app", {}, logs)
    canvas = web_process("canvas", "services.canvas.app:app", {"CANVAS_AUTH_URL": url_of(auth)}, logs)
    relay = Process("relay", [sys.executable, "-m", "services.auth.relay"], {}, logs / "relay.log")
    env = gateway_env(url_of(auth), url_of(canvas))
    gateway, metrics_url = gateway_process("gateway", logs, env)
    return System(url_of(gateway), auth, canvas, relay, gateway, metrics_url=metrics_url, gateway_env=env)


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


@asynccontextmanager
async def build_stack(
    data_dir: Path, name: str, *, workers: int = 1, appendonly: bool = False
) -> AsyncIterator[Stack]:
    """A complete system of its own: Redis, both databases migrated, auth, canvas, relay, gateway,
    logging at INFO into `stack.logs`.

    `workers` uvicorn workers per web process and a Redis with append-only persistence reproduce
    what docker-compose starts (2 workers, AOF); the default is the lighter single-worker stack.
    """
    root = data_dir / name
    urls, pg_names = await databases.fresh_databases(
        data_dir, sqlite_prefix=f"{name}-", postgres_prefix="cv_res"
    )
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
        **gateway_env(auth_url, canvas_url),
        "GATEWAY_REDIS_TIMEOUT": str(REDIS_TIMEOUT),
        "GATEWAY_RATE_LIMIT": "1000000000",  # the load run comes from one address; the limiter still runs
    }
    await asyncio.gather(*(asyncio.to_thread(migrate, [app], env) for app in APPS))
    logs = root / "logs"
    auth_db, canvas_db = await RawDB(urls["auth"]).open(2), await RawDB(urls["canvas"]).open(2)

    def web(process: str, app: str) -> Process:
        return web_process(process, app, env, logs, port=ports[process], workers=workers)

    running = Stack(
        gateway_url,
        web("auth", "services.auth.app:app"),
        web("canvas", "services.canvas.app:app"),
        Process("relay", [sys.executable, "-m", "services.auth.relay"], env, logs / "relay.log"),
        web("gateway", "gateway.app:app"),
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
        await databases.drop(pg_names)
