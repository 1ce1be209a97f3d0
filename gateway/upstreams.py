"""One long-lived HTTP client per upstream service, with a circuit breaker.

The client is gateway/http1.py's keep-alive pool (it replaced aiohttp's ClientSession, which cost
a third of the gateway's Python time per proxied request: bench/FINDINGS.md, issue 18). Failures map
to the statuses of docs/architecture.md, decision 7:
refused → 502, timed out → 504, marked down after `failures` consecutive failures → 503 with
Retry-After for `cooldown` seconds at most: while it is marked down, a probe asks its `/health`
every PROBE_INTERVAL and closes the breaker as soon as one answers. The gateway never re-sends a
request (gateway/http1.py): a GET that counts a view is not idempotent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from typing import Any

import structlog
from prometheus_client import Counter

from gateway.http1 import Broken, ConnectFailed, Pool, Response, TimedOut
from shared.errors import BadGateway, GatewayTimeout, Unavailable

log = structlog.get_logger()

FAILURES = Counter(
    "canvasverse_gateway_upstream_failures_total",
    "Calls the gateway answered itself because the service failed (502/504) or was marked down (503)",
    ["upstream", "status"],
)

KEEPALIVE = 4.0  # seconds an idle upstream connection is kept
PROBE_INTERVAL = 0.25  # seconds between health probes of an upstream marked down
PROBE_TIMEOUT = 1.0  # seconds a health probe may take, connect included


class Upstream:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        failures: int,
        cooldown: float,
        pool_wait: float = 2.0,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        # `connect_timeout` times the TCP connect alone; waiting for a place is `pool_wait` (issue
        # 14: a 2 s connect timeout that included the pool wait turned a backlog into 504s).
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool_size = pool_size
        self.pool_wait = pool_wait
        # Requests waiting for their answer's head; at most pool_size at once, the rest wait up to
        # pool_wait for a place and are then refused with 503 (0: refused at once, never queued).
        self._places = asyncio.Semaphore(pool_size)
        self.max_failures = failures
        self.cooldown = cooldown
        self.failures = 0
        self.down_until = 0.0
        self._pool: Pool | None = None
        self._probe: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Idle connections are dropped before the service's own keep-alive timeout (uvicorn: 5 s) can
        # close them under a request that would then fail (no request is re-sent: http1.py).
        # Twice the places: a connection still streaming an answer's body has given its place back.
        self._pool = Pool(
            self.base_url,
            limit=2 * self.pool_size,
            keepalive=KEEPALIVE,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
        )

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Pool:
        assert self._pool is not None, f"upstream {self.name} is not started"
        return self._pool

    def check_available(self) -> None:
        """Raise 503 while the upstream is marked down."""
        if self.down_until and time.monotonic() < self.down_until:
            retry = max(1, math.ceil(self.down_until - time.monotonic()))
            FAILURES.labels(self.name, "503").inc()
            raise Unavailable(f"The {self.name} service is unavailable", retry_after=retry)

    async def request(
        self, method: str, path_qs: str, *, headers: Mapping[str, str], body: bytes | None = None
    ) -> Response:
        """Send the request and return the response with its headers read (body not yet read).

        The caller must release the response. Raises problem details 502/503/504 on failure.
        """
        self.check_available()
        await self._take_place()
        try:
            resp = await self.pool.request(method, path_qs, headers, body)
        except TimedOut as exc:
            raise self._failure(exc, 504, "did not answer in time") from exc
        except (ConnectFailed, Broken) as exc:
            raise self._failure(exc, 502, "could not be reached") from exc
        finally:
            self._places.release()
        self.succeeded()
        return resp

    async def _take_place(self) -> None:
        """A place among the pool_size requests in flight, or 503 + Retry-After (not a failure of
        the service: it is answering, just not faster)."""
        if not self._places.locked():
            await self._places.acquire()
            return
        if self.pool_wait > 0:
            try:
                await asyncio.wait_for(self._places.acquire(), self.pool_wait)
                return
            except TimeoutError:
                pass
        FAILURES.labels(self.name, "busy").inc()
        raise Unavailable(f"The {self.name} service is busy; try again shortly", retry_after=1)

    async def json(
        self, method: str, path: str, *, headers: Mapping[str, str], body: bytes | None = None
    ) -> tuple[int, bytes]:
        """A small internal call: status and whole body."""
        resp = await self.request(method, path, headers=headers, body=body)
        try:
            return resp.status, await self.read(resp)
        finally:
            resp.release()

    async def read(self, resp: Response) -> bytes:
        """The whole body; a read that times out or breaks counts as a failure (504/502)."""
        try:
            return await resp.read()
        except TimedOut as exc:
            raise self._failure(exc, 504, "did not answer in time") from exc
        except Broken as exc:
            raise self._failure(exc, 502, "broke off its answer") from exc

    async def ready(self) -> None:
        """Raise unless the upstream's /ready answers 200 (for the gateway's own /ready)."""
        resp = await self.pool.request("GET", "/ready", {})
        try:
            await resp.read()
        finally:
            resp.release()
        if resp.status != 200:
            raise RuntimeError(f"{self.name} not ready: {resp.status}")

    def _failure(self, exc: BaseException, status: int, what: str) -> Exception:
        self.failed(exc)
        FAILURES.labels(self.name, str(status)).inc()
        failure = GatewayTimeout if status == 504 else BadGateway
        return failure(f"The {self.name} service {what}")

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        log.warning("upstream_failed", upstream=self.name, error=type(exc).__name__, failures=self.failures)
        if self.failures >= self.max_failures:
            if not self.down_until or time.monotonic() >= self.down_until:
                log.error("upstream_marked_down", upstream=self.name, seconds=self.cooldown)
            self.down_until = time.monotonic() + self.cooldown
            if self._pool is not None and (self._probe is None or self._probe.done()):
                self._probe = asyncio.create_task(self._probe_until_up(), name=f"probe-{self.name}")

    async def _probe_until_up(self) -> None:
        """While marked down: ask `/health` every PROBE_INTERVAL; the first answer closes the breaker."""
        while self.down_until and self._pool is not None:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    resp = await self.pool.request("GET", "/health", {})
                    resp.release()
            except (TimeoutError, ConnectFailed, TimedOut, Broken):
                continue
            if resp.status == 200:
                log.info("upstream_up_again", upstream=self.name)
                self.failures = 0
                self.down_until = 0.0
                return

    def succeeded(self) -> None:
        if self.failures:
            self.failures = 0
            self.down_until = 0.0

    @classmethod
    def from_settings(cls, name: str, base_url: str, settings: Any, **overrides: Any) -> Upstream:
        options = {
            "connect_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout,
            "pool_size": settings.pool_size,
            "failures": settings.circuit_failures,
            "cooldown": settings.circuit_cooldown,
            "pool_wait": settings.pool_wait,
        }
        return cls(name, base_url, **(options | overrides))
