"""The signed-in caller: one dependency, provided the same way by every service.

The gateway (or `/internal/forward-auth`) signs the end user and their session into the internal
credential (`shared.auth_middleware`). Handlers never read it themselves: a route that needs a
signed-in caller declares `guards=[requires_caller]` (so an anonymous call is 401 before the body is
parsed) and takes `caller: CallerDep`; a route open to anonymous callers takes
`maybe_caller: MaybeCallerDep` (None when anonymous). `create_service_app` provides both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from litestar.di import NamedDependency, Provide
from litestar.handlers.base import BaseRouteHandler

from shared.auth_middleware import AnyRequest, Connection, caller_of
from shared.errors import Unauthorized

NEEDS_SESSION = "This route needs a session"


@dataclass(frozen=True, slots=True)
class Caller:
    """The end user the credential names (`user_id`, a valid UUID, also as `user`) and their session."""

    user_id: str
    user: uuid.UUID
    session_id: str


def maybe_caller_of(connection: Connection) -> Caller | None:
    """None for an anonymous call; 401 for a credential naming a user without a valid id or session."""
    cred = caller_of(connection)
    if cred.uid is None:
        return None
    if not cred.sid:
        raise Unauthorized(NEEDS_SESSION)
    try:
        user = uuid.UUID(cred.uid)
    except ValueError as exc:
        raise Unauthorized(NEEDS_SESSION) from exc
    return Caller(cred.uid, user, cred.sid)


def signed_in_caller(connection: Connection) -> Caller:
    """The caller; 401 when anonymous."""
    found = maybe_caller_of(connection)
    if found is None:
        raise Unauthorized(NEEDS_SESSION)
    return found


async def requires_caller(connection: Connection, _: BaseRouteHandler) -> None:
    """Guard: runs before the body is parsed, so an anonymous call is 401 whatever it sends.
    A coroutine function: Litestar runs a plain function guard in a worker thread (its
    `ensure_async_callable`), a thread hop per request (~30 % of `GET /api/users/me`; issue 18)."""
    signed_in_caller(connection)


def _provide_caller(request: AnyRequest) -> Caller:
    return signed_in_caller(request)


def _provide_maybe_caller(request: AnyRequest) -> Caller | None:
    return maybe_caller_of(request)


CallerDep = NamedDependency[Caller]
MaybeCallerDep = NamedDependency[Caller | None]

DEPENDENCIES = {
    "caller": Provide(_provide_caller, sync_to_thread=False),
    "maybe_caller": Provide(_provide_maybe_caller, sync_to_thread=False),
}
