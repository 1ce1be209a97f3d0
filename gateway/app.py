"""The gateway's Litestar app: the /api proxy mount, the merged OpenAPI document, ops routes.

Built from the shared parts (problem details, logging, request ids, ops routes) but not with
`create_service_app`: the gateway is the public edge, so it has no internal-credential middleware
and adds CORS and the rate limit instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, asgi
from litestar.config.cors import CORSConfig
from litestar.middleware.rate_limit import DURATION_VALUES

from gateway.admission import PasswordDoor
from gateway.client_ip import client_ip
from gateway.edge import EdgeMiddleware, metrics_listener
from gateway.openapi import SchemaCache, schema_router
from gateway.proxy import Proxy
from gateway.rate_limit import STORE_NAME, RateCountStore, rate_limit_config
from gateway.redis_guard import RedisGuard, make_redis
from gateway.sessions import SessionValidator
from gateway.settings import GatewaySettings, from_environment
from shared.access_log import AccessLogMiddleware
from shared.app import entry_point, wrap_outermost
from shared.errors import EXCEPTION_HANDLERS, problem_details_plugin
from shared.logging import configure_logging
from shared.ops import ReadyCheck, ops_router, prometheus_config
from shared.settings import log_startup_warnings

SKIP_LITESTAR_METRICS = "skip_litestar_metrics"  # the proxy records its own, per public route


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
        proxy.validator = validator = SessionValidator(redis, guard, proxy.upstreams["auth"], settings.secret)
        counts = RateCountStore(redis, guard, DURATION_VALUES[settings.rate_limit_unit])
        app.stores.register(STORE_NAME, counts, allow_override=True)
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

    middleware = []
    if settings.rate_limit > 0:
        limit = rate_limit_config(settings.rate_limit, settings.rate_limit_unit, settings.trusted_proxies)
        middleware.append(limit.middleware)
    api = asgi(
        "/api", is_mount=True, copy_scope=False, middleware=middleware, opt={SKIP_LITESTAR_METRICS: True}
    )(proxy.handle)
    ready_checks: dict[str, ReadyCheck] = {
        "redis": redis.ping,
        "auth": proxy.upstreams["auth"].ready,
        "canvas": proxy.upstreams["canvas"].ready,
    }
    prometheus = dataclasses.replace(prometheus_config("gateway"), exclude_opt_key=SKIP_LITESTAR_METRICS)
    app = Litestar(
        route_handlers=[ops_router(ready_checks), schema_router(schema), api],
        lifespan=[clients],
        middleware=[prometheus.middleware],
        plugins=[problem_details_plugin()],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        cors_config=_cors(settings),
        openapi_config=None,
        logging_config=None,  # shared.logging has configured structlog; Litestar's default would replace it
        request_max_body_size=settings.body_limit,
        debug=False,
    )
    app.asgi_handler = EdgeMiddleware(app.asgi_handler, settings.metrics_allow)
    door = PasswordDoor(
        app.asgi_handler,
        proxy.table,
        settings.trusted_proxies,
        settings.password_client_in_flight,
        access_log=settings.access_log,
    )
    app.asgi_handler = door
    app.state.fast_answer = door.fast_answer  # shared/server.py's hook: refusals with no ASGI task
    if settings.access_log:  # inside the request-id middleware that wrap_outermost adds
        trusted = settings.trusted_proxies
        app.asgi_handler = AccessLogMiddleware(app.asgi_handler, lambda scope: client_ip(scope, trusted))
    wrap_outermost(app)
    return app


# `module:app` for uvicorn: built from the environment on first access, not at import.
__getattr__ = entry_point(lambda: create_app(from_environment()))
