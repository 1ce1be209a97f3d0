"""Litestar middleware that admits only internal calls carrying a valid signed credential."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import structlog
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware._utils import should_bypass_middleware
from litestar.middleware.base import DefineMiddleware
from litestar.types import Receive, Scope, Send

from shared import internal_auth
from shared.errors import Unauthorized
from shared.internal_auth import InternalCredential

# What handlers, guards and providers receive (Litestar's generics, with no typed user/auth/state).
AnyRequest = Request[Any, Any, Any]
Connection = ASGIConnection[Any, Any, Any, Any]

OPEN_PATHS = {"/health", "/ready", "/metrics", "/schema"}
EXCLUDE_FROM_AUTH = "exclude_from_auth"  # a route handler opt: open without a credential
_HEADER = internal_auth.HEADER.encode()  # ASGI header names are lowercase bytes


class InternalAuthMiddleware(AbstractAuthenticationMiddleware):
    """Sets `request.user` to the caller's InternalCredential; 401 when missing or invalid."""

    def __init__(self, app, secret: bytes, max_age: float, audiences: frozenset[str], **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app, **kwargs)
        self.secret = secret
        self.max_age = max_age
        self.audiences = audiences

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Litestar's own `__call__` (the same exclusions) minus the ASGIConnection it builds for
        `authenticate_request`, whose headers parse every header into a multidict to read one: the
        credential is read straight from the scope (issue 18)."""
        if not should_bypass_middleware(
            exclude_http_methods=self.exclude_http_methods,
            exclude_opt_key=self.exclude_opt_key,
            exclude_path_pattern=self.exclude,
            scope=scope,
            scopes=self.scopes,
        ):
            raw = next((value for name, value in scope["headers"] if name == _HEADER), None)
            cred = self.check(None if raw is None else raw.decode("latin-1"), scope["path"])
            scope["user"] = scope["auth"] = cred
        await self.app(scope, receive, send)

    async def authenticate_request(self, connection: Connection) -> AuthenticationResult:
        cred = self.check(connection.headers.get(internal_auth.HEADER), connection.scope["path"])
        return AuthenticationResult(user=cred, auth=cred)

    def check(self, value: str | None, path: str) -> InternalCredential:
        """The verified credential for a request to `path`; 401 when missing or invalid."""
        try:
            cred = internal_auth.verify(self.secret, value, audiences=self.audiences, max_age=self.max_age)
            if cred.api and not path.startswith("/api/"):
                raise internal_auth.InvalidCredential("internal credential limited to the public API")
        except internal_auth.InvalidCredential as exc:
            raise Unauthorized(str(exc)) from exc
        if cred.uid:
            structlog.contextvars.bind_contextvars(user_id=cred.uid)
        return cred


def internal_auth_middleware(
    secret: bytes, audiences: Collection[str], max_age: float = internal_auth.DEFAULT_MAX_AGE
) -> DefineMiddleware:
    """Admits credentials signed with `secret` for one of `audiences` (this service's name)."""
    return DefineMiddleware(
        InternalAuthMiddleware,
        secret=secret,
        max_age=max_age,
        audiences=frozenset(audiences),
        exclude=[f"^{p}" for p in OPEN_PATHS],
        exclude_from_auth_key=EXCLUDE_FROM_AUTH,
    )


def caller_of(connection: Connection) -> InternalCredential:
    return connection.user  # type: ignore[no-any-return]
