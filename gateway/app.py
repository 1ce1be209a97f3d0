"""The gateway's app: the /api front (gateway/front.py) over a Litestar app with the ops routes and
the merged OpenAPI document.

Built from the shared parts (problem details, logging, request ids, ops routes) but not with
`create_service_app`: the gateway is the public edge, so it has no internal-credential middleware
and adds CORS, the edge headers, the password door and the rate limit instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.middleware.rate_limit import DURATION_VALUES
from litestar.types import ASGIApp

from gateway.client_ip import client_ip
from gateway.edge import EdgeMiddleware, metrics_listener
from gateway.front import ApiFront
from gateway.openapi import SchemaCache, schema_router
from gateway.proxy import Proxy
from gateway.rate_limit import RateCountStore, RateLimit
from gateway.redis_guard import RedisGuard, make_redis
from gateway.sessions import SessionValidator
from gateway.settings import GatewaySettings, from_environment
from shared.access_log import AccessLogMiddleware
from shared.app import entry_point
from shared.errors import EXCEPTION_HANDLERS, problem_details_plugin
from shared.heap import settled_heap
from shared.logging import configure_logging
from shared.ops import ReadyCheck, ops_router, prometheus_config
from shared.request_id import RequestIdMiddleware
from shared.settings import log_startup_warnings


def _cors(settings: GatewaySettings) -> CORSConfig | None:
    if not settings.allowed_origins:
        return None
    return CORSConfig(
        allow_origins=settings.allowed_origins,
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-Request-Id"],
        expose_headers=[
            "X-Request-Id",
            "Retry-After",
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
        ],
    )


def create_app(settings: GatewaySettings) -> Litestar:
    configure_logging("gateway", json=settings.json_logs, level=settings.log_level)
    log_startup_warnings(settings)
    proxy = Proxy(settings)
    schema = SchemaCache(proxy.upstreams, proxy.table, settings.secret, settings.schema_ttl)
    redis = make_redis(settings.redis_url, settings.redis_timeout)
    guard = RedisGuard(settings.redis_cooldown)

    @asynccontextmanager
    async def clients(app: Litestar) -> AsyncIterator[None]:
        for upstream in proxy.clients:
            await upstream.start()
        proxy.validator = validator = SessionValidator(
            redis, guard, proxy.upstreams["auth"], settings.secret, memory_ttl=settings.session_memory_ttl
        )
        validator.start()
        app.state.redis = redis
        app.state.proxy = proxy
        sync = asyncio.create_task(counts.run())
        try:
            async with metrics_listener(settings.metrics_host, settings.metrics_port):
                yield
        finally:
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync
            for upstream in proxy.clients:
                await upstream.close()
            await validator.aclose()
            await redis.aclose()

    counts = RateCountStore(redis, guard, DURATION_VALUES[settings.rate_limit_unit])
    limit = None
    if settings.rate_limit > 0:
        limit = RateLimit(counts, settings.rate_limit, settings.trusted_proxies)
    ready_checks: dict[str, ReadyCheck] = {
        "redis": redis.ping,
        "auth": proxy.upstreams["auth"].ready,
        "canvas": proxy.upstreams["canvas"].ready,
    }
    app = Litestar(
        route_handlers=[ops_router(ready_checks), schema_router(schema)],
        lifespan=[clients, settled_heap],  # last: once every client is built
        middleware=[prometheus_config("gateway").middleware],
        plugins=[problem_details_plugin()],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        cors_config=_cors(settings),
        openapi_config=None,
        logging_config=None,  # shared.logging has configured structlog; Litestar's default would replace it
        request_max_body_size=settings.body_limit,
        debug=False,
    )
    # Outside /api: the ops routes and /schema, behind the request id, the access log and the edge.
    trusted = settings.trusted_proxies
    other: ASGIApp = EdgeMiddleware(app.asgi_handler, settings.metrics_allow)
    if settings.access_log:
        other = AccessLogMiddleware(other, lambda scope: client_ip(scope, trusted))
    front = ApiFront(app, RequestIdMiddleware(other), proxy, limit, settings)
    app.asgi_handler = front
    app.state.fast_answer = front.door.fast_answer  # shared/server.py's hook: refusals with no ASGI task
    app.state.raw_refusals = front.door  # and its cheapest: refusals from a request's raw bytes
    return app


# `module:app` for uvicorn: built from the environment on first access, not at import.
__getattr__ = entry_point(lambda: create_app(from_environment()))
