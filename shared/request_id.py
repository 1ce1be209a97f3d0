"""X-Request-Id: accept a well-formed client id or make one; echo it and bind it for logging."""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_HEADER = HEADER.encode()
_VALID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def set_headers(message: Any, *pairs: tuple[bytes, bytes]) -> None:
    """Set these response headers (lowercase names) on an `http.response.start` message, replacing any
    of the same names the app set. One pass over the list: Litestar's MutableScopeHeaders decodes and
    lowercases every name for each header set (issue 18: a few µs per header on every answer)."""
    names = {name for name, _ in pairs}
    kept: list[tuple[bytes, bytes]] = [
        (k, v) for k, v in message.get("headers") or () if k.lower() not in names
    ]
    kept += pairs
    message["headers"] = kept


def valid_request_id(value: str | None) -> str:
    """The client's id when it is 1..128 characters of [A-Za-z0-9._-], else a new UUID."""
    return value if value and _VALID.fullmatch(value) else str(uuid.uuid4())


class RequestIdMiddleware:
    """Pure ASGI middleware, so that even routing errors (404/405) carry the header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == _HEADER), b"")
        rid = valid_request_id(raw.decode("latin-1"))
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        header = (_HEADER, rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                set_headers(message, header)  # replaces any the app set
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "user_id")
