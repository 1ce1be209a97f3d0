"""The access log: one structured `access` line per request (method, route, status, duration, request
id, client), at INFO on the `canvasverse.access` logger.

Hand-written as pure ASGI middleware rather than Litestar's LoggingMiddleware: that one writes the
request and the response as two entries, has no duration, sees only matched routes (no 404/405)
and logs through Litestar's own logging config, which this project replaces with structlog.
The route is the template, not the raw path (`/api/canvases/{id}`): whoever handled the request
names it in `scope["state"]["route"]`, else Litestar's matched `path_template`, else "unmatched".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

LOGGER = "canvasverse.access"
ROUTE_KEY = "route"


class AccessLogMiddleware:
    """Wrap an ASGI app (inside the request-id middleware, so the id is known)."""

    def __init__(self, app: ASGIApp, client: Callable[[Scope], str]) -> None:
        self.app = app
        self.client = client
        self.enabled = logging.getLogger(LOGGER).isEnabledFor
        self.log = structlog.get_logger(LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not self.enabled(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # the answer if the app raises before it starts one

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state", {})
            self.log.info(
                "access",
                method=scope.get("method"),
                route=state.get(ROUTE_KEY) or scope.get("path_template") or "unmatched",
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                request_id=state.get("request_id", ""),
                client=self.client(scope),
            )
