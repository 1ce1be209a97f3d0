"""The gateway's outermost ASGI layer: every `/api` request in one pass, everything else to Litestar.

Before (issue 18), a proxied read crossed eleven ASGI layers: request id, access log, password door,
edge headers, Litestar's app, CORS, exception middleware, router, the `/api` mount with the rate-limit
middleware, a second exception middleware, the mount's handler. Each wrapped `send` in a closure or
built a connection object; together, with Litestar's routing, they were a fifth of the gateway's
Python time per read (cProfile, bench/FINDINGS.md). `ApiFront` does the same work for `/api` in
one layer with one `send` wrapper:

- the request id (`shared.request_id`: the client's valid id or a new one, echoed, bound for logs);
- the edge's response headers (`gateway.edge`: nosniff, and no-store on private paths);
- the password door (`gateway.admission`), then CORS with Litestar's own `CORSMiddleware` and the
  app's `CORSConfig`, then the rate limit (`gateway.rate_limit`), then the proxy;
- an error raised before the answer starts is rendered by the app's own exception handlers (the
  problem-details plugin and `shared.errors`), exactly as Litestar's exception middleware does, inside
  CORS and with the rate-limit headers, so an error reads the same as before, to a browser too;
- the access log line.

The path is normalised as Litestar's router does (`normalize_path`; `//` collapsed, trailing `/`
dropped) and an invalid `Host` is 400 as there. Everything else (`/health`, `/ready`, `/metrics`,
`/schema`) goes to the Litestar app behind the previous layers (request id, access log, edge).
"""

from __future__ import annotations

import logging
import time
from typing import cast

import structlog
from litestar import Litestar
from litestar._asgi.utils import is_valid_host  # the router's own Host check, so /api answers it alike
from litestar.enums import ScopeType
from litestar.exceptions import ClientException
from litestar.middleware._internal.cors import CORSMiddleware  # the class Litestar wraps its app in
from litestar.middleware._internal.exceptions.middleware import get_exception_handler
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from gateway.admission import PasswordDoor
from gateway.client_ip import client_ip
from gateway.edge import NO_STORE, NOSNIFF, is_private, routing_path
from gateway.proxy import Proxy
from gateway.rate_limit import RateLimit
from gateway.settings import GatewaySettings
from shared.access_log import LOGGER, ROUTE_KEY
from shared.request_id import HEADER, request_id_of, set_headers

_HEADER = HEADER.encode()


class ApiFront:
    def __init__(
        self,
        app: Litestar,
        other: ASGIApp,
        proxy: Proxy,
        rate_limit: RateLimit | None,
        settings: GatewaySettings,
    ) -> None:
        """`app`: the Litestar app (its CORS config and exception handlers); `other`: what serves every
        path outside /api."""
        self.app = app
        self.other = other
        self.proxy = proxy
        self.rate_limit = rate_limit
        self.trusted_proxies = frozenset(settings.trusted_proxies)
        self.log = structlog.get_logger(LOGGER)
        self.access_log = settings.access_log and logging.getLogger(LOGGER).isEnabledFor(logging.INFO)
        inner: ASGIApp = self._serve
        if app.cors_config is not None:
            inner = CORSMiddleware(app=inner, config=app.cors_config)
        self.door = PasswordDoor(
            inner,
            proxy.table,
            settings.trusted_proxies,
            settings.password_client_in_flight,
            access_log=settings.access_log,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.other(scope, receive, send)
            return
        path = routing_path(scope)
        if not path.startswith("/api"):
            await self.other(scope, receive, send)
            return
        scope["path"] = path
        state = scope["state"]
        rid = request_id_of(scope)
        state["request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        status = 500  # the answer if nothing was sent
        added = [(_HEADER, rid.encode("latin-1")), NOSNIFF]
        if is_private(path):
            added.append(NO_STORE)

        async def send_front(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                set_headers(message, *added)
            await send(message)

        try:
            await self.door(scope, receive, send_front)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "user_id")
            if self.access_log:
                self.log.info(
                    "access",
                    method=scope.get("method"),
                    route=state.get(ROUTE_KEY) or "unmatched",
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    request_id=rid,
                    client=client_ip(scope, self.trusted_proxies),
                )

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inside the door and CORS: the rate limit, the proxy, and problem details for what they raise."""
        answered = False
        limit_headers: list[tuple[bytes, bytes]] = []

        async def send_answer(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                if limit_headers:
                    message["headers"] = [*message.get("headers", ()), *limit_headers]
            await send(message)

        try:
            host = next((v for k, v in scope["headers"] if k == b"host"), None)
            if host is not None and not is_valid_host(host):
                raise ClientException("Invalid host header")
            if self.rate_limit is not None:
                limit_headers = self.rate_limit.admit(scope)
            await self.proxy.handle(cast("HTTPScope", scope), receive, send_answer)
        except Exception as exc:
            if answered:
                raise
            await self._problem(scope, receive, send_answer, exc)

    async def _problem(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """What Litestar's exception middleware does for an HTTP error: the app's handler for this
        exception type builds the response (problem details; `shared.errors`)."""
        handler = get_exception_handler(self.app.exception_handlers, exc)
        if handler is None:  # no handler for `Exception` (shared.errors has one): re-raise as Litestar would
            raise exc
        request = self.app.request_class(scope=scope, receive=receive, send=send)
        response = handler(request, exc)
        await response.to_asgi_response(app=None, request=request, type_encoders=self.app.type_encoders)(
            scope, receive, send
        )
