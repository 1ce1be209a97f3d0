"""The real system, started the way the end-to-end tests start it: own Redis, fresh databases, migrations,
the auth service, the outbox relay, the canvas service and the gateway, each its own process.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from pathlib import Path

from bench.databases import Databases
from devtools.migrate import migrate
from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import RedisServer, free_port
from shared import internal_auth

SERVICES = {
    "auth": "services.auth.app:app",
    "canvas": "services.canvas.app:app",
    "gateway": "gateway.app:app",
}
# Signed this far ahead (within the receiver's clock-skew allowance), a credential stays valid for
# max_age + this many seconds: long enough for any single wrk run the harness makes.
CREDENTIAL_LEAD = 4.0
START_ORDER = ("auth", "relay", "canvas", "gateway")
UNLIMITED_RATE = "1000000000"  # the rate limiter still runs on every request; no client trips it
# docker-compose.yml's AUTH_WORKERS / CANVAS_WORKERS / GATEWAY_WORKERS defaults: the scenarios whose
# goal is set "with the deployed worker counts" (4, 14) run with these (tests/bench checks the file).
DEPLOYED_WORKERS = 2


class System:
    def __init__(self, db: str, data_dir: Path, log_dir: Path, *, workers: int = 1) -> None:
        self.db = db
        self.workers = workers
        self.worker_counts: dict[str, int] = {}  # a process's own count, where not `workers`
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.databases = Databases(db, data_dir / "db")
        self.redis: RedisServer | None = None
        self.ports = {name: free_port() for name in SERVICES}
        self.secret = secrets.token_urlsafe(32)
        self.env: dict[str, str] = {}
        self.processes: dict[str, Process] = {}
        self.also_watched: dict[str, int] = {}  # a scenario's own processes (nginx, the reference app)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def canvas_db_url(self) -> str:
        return self.databases.urls["canvas"]

    def _environment(self, redis_url: str) -> dict[str, str]:
        return {
            "APP_ENV": "development",
            "REDIS_URL": redis_url,
            "INTERNAL_SECRET": self.secret,
            "LOG_LEVEL": "WARNING",
            "AUTH_DATABASE_URL": self.databases.urls["auth"],
            "CANVAS_DATABASE_URL": self.databases.urls["canvas"],
            "CANVAS_AUTH_URL": self.url("auth"),
            "GATEWAY_AUTH_URL": self.url("auth"),
            "GATEWAY_CANVAS_URL": self.url("canvas"),
            "GATEWAY_COOKIE_SECURE": "false",
            "GATEWAY_RATE_LIMIT": UNLIMITED_RATE,
        }

    def _process(self, name: str) -> Process:
        log = self.log_dir / f"{name}.log"
        if name == "relay":
            return Process(name, [sys.executable, "-m", "services.auth.relay"], self.env, log)
        port = self.ports[name]
        command = uvicorn_cmd(SERVICES[name], port, workers=self.worker_counts.get(name, self.workers))
        return Process(name, command, self.env, log, f"{self.url(name)}/health")

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.data_dir / "redis", appendonly=False).start()
        await self.databases.create()
        self.env = self._environment(self.redis.url)
        await asyncio.to_thread(migrate, None, self.env)
        for name in START_ORDER:
            await self.start_process(name)

    async def start_process(self, name: str) -> None:
        """Start one process and wait until its /ready answers 200 (database and Redis reached)."""
        proc = self._process(name)
        self.processes[name] = proc
        await asyncio.to_thread(proc.start, 60)
        if proc.health_url:
            await asyncio.to_thread(proc.wait_healthy, 60, proc.health_url.replace("/health", "/ready"))

    async def restart(self, names: tuple[str, ...] = START_ORDER, *, workers: int | None = None) -> None:
        """Fresh processes (same databases and Redis), e.g. to measure memory from a cold start; stopped
        in reverse start order, started in start order (the gateway is ready only once both services are).
        `workers`: these processes' uvicorn worker count from now on (None: the system's own)."""
        chosen = [name for name in START_ORDER if name in names]
        for name in chosen:
            if workers is None or workers == self.workers:
                self.worker_counts.pop(name, None)
            else:
                self.worker_counts[name] = workers
        for name in reversed(chosen):
            await asyncio.to_thread(self.processes[name].stop, 20)
        for name in chosen:
            await self.start_process(name)

    async def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            await asyncio.to_thread(proc.stop, 20)
        self.processes = {}
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        await self.databases.drop()

    def pid(self, name: str) -> int:
        proc = self.processes[name].proc
        assert proc is not None
        return proc.pid

    async def watched(self) -> dict[str, list[int]]:
        """The processes whose CPU time the load runs record (PostgreSQL: our databases' backends)."""
        found = {name: [self.pid(name)] for name in self.processes}
        if self.redis is not None and self.redis.process is not None:
            found["redis"] = [self.redis.process.pid]
        if self.db == "postgres":
            found["postgres"] = await self.databases.backends()
        return found | {name: [pid] for name, pid in self.also_watched.items()}

    def credential(
        self,
        user_id: str | None = None,
        session_id: str | None = None,
        *,
        audience: str = "canvas",
        api_only: bool = True,
    ) -> str:
        """A valid X-Internal-Auth value, as the gateway would sign it, valid ~34 s from now: by
        default for the canvas service's /api routes (what the proxy sends); `audience="auth",
        api_only=False` is the gateway's own session validation call."""
        return internal_auth.sign(
            self.secret.encode(),
            audience=audience,
            api_only=api_only,
            user_id=user_id,
            session_id=session_id,
            request_id=f"bench-{secrets.token_hex(4)}",
            client_ip="127.0.0.1",
            now=time.time() + CREDENTIAL_LEAD,
        )

    def logs_tail(self, lines: int = 15) -> str:
        return "\n".join(f"[{n}] {p.tail(lines)}" for n, p in self.processes.items() if p.tail(lines))
