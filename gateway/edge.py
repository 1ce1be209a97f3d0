"""What the public edge adds: response headers on /api answers and where /metrics is served.

- Every `/api` answer carries `X-Content-Type-Options: nosniff`; answers under `/api/auth/` and
  `/api/users/` (tokens, a user's own data) carry `Cache-Control: no-store`. Set by the /api front
  (`gateway/front.py`) in its one `send` wrapper, so they reach every answer whoever wrote it (the
  proxy streaming a service's answer, problem details, CORS preflights, the password door's 429).
- `/metrics` on the public port answers 404 unless the peer is in `GATEWAY_METRICS_ALLOW`
  (addresses or networks, default none); scrapers use the separate listener on
  `GATEWAY_METRICS_HOST:GATEWAY_METRICS_PORT` (aiohttp, SO_REUSEPORT so every uvicorn worker can
  bind it), which the deployment does not publish.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.utils.path import normalize_path
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.ops import metrics_registry

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")
_PRIVATE_PREFIXES = ("/api/auth/", "/api/users/")
_NOT_FOUND = (
    b'{"status":404,"title":"Not Found","detail":"Not Found"}',
    [(b"content-type", b"application/problem+json")],
)


def routing_path(scope: Scope) -> str:
    """The path as Litestar's router matches it (after `root_path`, `//` collapsed, no trailing `/`),
    so that no spelling of a path (`//metrics`, `/api//users/me/`) escapes a check made on it."""
    path: str = scope["path"]
    if root_path := scope.get("root_path"):
        path = path.split(root_path, maxsplit=1)[-1]
    return normalize_path(path)


def is_private(path: str) -> bool:
    """Whether answers on this (normalised) path carry a token or a user's data: `no-store`."""
    return path.startswith(_PRIVATE_PREFIXES) or path in ("/api/auth", "/api/users")


class Networks:
    def __init__(self, allowed: list[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in allowed]

    def __contains__(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, metrics_allow: list[str]) -> None:
        self.app = app
        self.metrics_allow = Networks(metrics_allow)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        if routing_path(scope).startswith("/metrics") and not self._may_scrape(scope):
            body, headers = _NOT_FOUND
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await self.app(scope, receive, send)

    def _may_scrape(self, scope: Scope) -> bool:
        client = scope.get("client")
        return bool(client) and client[0] in self.metrics_allow  # type: ignore[index]


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(
        body=generate_latest(metrics_registry()), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@asynccontextmanager
async def metrics_listener(host: str, port: int) -> AsyncIterator[None]:
    """Serve /metrics on its own port while the app runs (port 0: no listener)."""
    if not port:
        yield
        return
    app = web.Application()
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_port=True).start()
    try:
        yield
    finally:
        await runner.cleanup()
