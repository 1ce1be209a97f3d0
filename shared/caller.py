"""The signed-in caller: one dependency, provided the same way by every service.

The gateway (or `/internal/forward-auth`) signs the end user and their session into the internal
credential (`shared.auth_middleware`). Handlers never read it themselves: a route that needs a
signed-in caller declares `opt=SIGNED_IN_ONLY` (a controller may declare it for all its routes) and
takes `caller: CallerDep`; a route open to anonymous callers takes `maybe_caller: MaybeCallerDep`
(None when anonymous). `create_service_app` provides both.

`SIGNED_IN_ONLY` is checked by the service's one route middleware (shared/route_middleware.py), so an
anonymous call is 401 before its body is decoded. Not a Litestar guard: Litestar hands every guard a
copy of the route handler (`copy(handler)`, on each request), which was 14 % of the instructions of
`GET /api/users/me` (issue 18, bench/FINDINGS.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from litestar.di import NamedDependency, Provide

from shared.auth_middleware import AnyRequest, Connection, caller_of
from shared.errors import Unauthorized
from shared.internal_auth import InternalCredential

NEEDS_SESSION = "This route needs a session"
SIGNED_IN = "signed_in"  # a route handler opt: the route needs a signed-in caller (401 otherwise)
SIGNED_IN_ONLY: Mapping[str, bool] = MappingProxyType({SIGNED_IN: True})  # opt=SIGNED_IN_ONLY


@dataclass(frozen=True, slots=True)
class Caller:
    """The end user the credential names (`user_id`, a valid UUID, also as `user`) and their session."""

    user_id: str
    user: uuid.UUID
    session_id: str


def maybe_caller_of(connection: Connection) -> Caller | None:
    """None for an anonymous call; 401 for a credential naming a user without a valid id or session."""
    return caller_in(caller_of(connection))


def caller_in(cred: InternalCredential) -> Caller | None:
    """The caller a verified credential names: None when anonymous; 401 for a user without a valid
    id or session."""
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
