"""The internal credential every service route requires (checked in shared/route_middleware.py), and
the request types handlers and providers use."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.types import Scope

from shared import internal_auth
from shared.errors import Unauthorized
from shared.internal_auth import InternalCredential

# What handlers, guards and providers receive (Litestar's generics, with no typed user/auth/state).
AnyRequest = Request[Any, Any, Any]
Connection = ASGIConnection[Any, Any, Any, Any]

OPEN_PATHS = {"/health", "/ready", "/metrics", "/schema"}  # and what they start (/schema/openapi.json)
_OPEN_PREFIXES = tuple(sorted(OPEN_PATHS))
EXCLUDE_FROM_AUTH = "exclude_from_auth"  # a route handler opt: open without a credential
_HEADER = internal_auth.HEADER.encode()  # ASGI header names are lowercase bytes


class CredentialCheck:
    """The internal credential's check, run by every service route (shared/route_middleware.py):
    the request's `X-Internal-Auth`, signed with `secret` for one of `audiences` (this service's
    name), or 401. Open without one: the ops paths (`OPEN_PATHS`, by prefix) and the routes whose
    handler sets the `EXCLUDE_FROM_AUTH` opt."""

    def __init__(
        self, secret: bytes, audiences: Collection[str], max_age: float = internal_auth.DEFAULT_MAX_AGE
    ) -> None:
        self.secret = secret
        self.max_age = max_age
        self.audiences = frozenset(audiences)

    def is_open(self, scope: Scope) -> bool:
        handler = scope.get("route_handler")
        return scope["path"].startswith(_OPEN_PREFIXES) or bool(
            handler is not None and handler.opt.get(EXCLUDE_FROM_AUTH)
        )

    def __call__(self, scope: Scope) -> InternalCredential:
        """The verified credential of this request, read straight from the scope's headers; 401 when
        missing or invalid."""
        value = None
        for name, raw in scope["headers"]:
            if name == _HEADER:
                value = raw.decode("latin-1")
                break
        try:
            cred = internal_auth.verify(self.secret, value, audiences=self.audiences, max_age=self.max_age)
            if cred.api and not scope["path"].startswith("/api/"):
                raise internal_auth.InvalidCredential("internal credential limited to the public API")
        except internal_auth.InvalidCredential as exc:
            raise Unauthorized(str(exc)) from exc
        if cred.uid:
            structlog.contextvars.bind_contextvars(user_id=cred.uid)
        return cred


def caller_of(connection: Connection) -> InternalCredential:
    return connection.user  # type: ignore[no-any-return]
