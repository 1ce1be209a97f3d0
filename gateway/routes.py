"""The public routes of docs/api.md: which service owns each, and who may call it.

Matched on the path Litestar normalised (no trailing slash, no repeated slashes); every other path
under /api is 404, a known path with a method it lacks is 405 with `Allow`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

AUTH = "auth"
CANVAS = "canvas"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Access(enum.Enum):
    PUBLIC = "public"  # signup, login, reset, confirmations: no session involved, Origin checked when present
    OPTIONAL = "optional"  # anonymous allowed; a presented token must be valid
    SESSION = "session"  # 401 without a valid session


@dataclass(frozen=True, slots=True)
class Endpoint:
    template: str
    method: str
    upstream: str
    access: Access
    starts_session: bool = False  # the response body carries {token, expiresAt}: set the cookie
    hashes: bool = False  # may hash a password: sent through the auth service's password pool


@dataclass(slots=True)
class Route:
    template: str
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    allow: str = ""


def _table() -> list[Endpoint]:
    session, optional, public = Access.SESSION, Access.OPTIONAL, Access.PUBLIC
    return [
        Endpoint("/api/auth/signup", "POST", AUTH, public, starts_session=True, hashes=True),
        Endpoint("/api/auth/login", "POST", AUTH, public, starts_session=True, hashes=True),
        Endpoint("/api/auth/logout", "POST", AUTH, session),
        Endpoint("/api/auth/sessions", "GET", AUTH, session),
        Endpoint("/api/auth/sessions", "DELETE", AUTH, session),
        Endpoint("/api/auth/sessions/{id}", "DELETE", AUTH, session),
        Endpoint("/api/auth/password-reset", "POST", AUTH, public),
        Endpoint("/api/auth/password-reset/confirm", "POST", AUTH, public, hashes=True),
        Endpoint("/api/auth/email-verification/confirm", "POST", AUTH, public),
        Endpoint("/api/users/me", "GET", AUTH, session),
        Endpoint("/api/users/me", "PATCH", AUTH, session, hashes=True),
        Endpoint("/api/users/me", "DELETE", AUTH, session, hashes=True),
        Endpoint("/api/users/me/password", "POST", AUTH, session, hashes=True),
        Endpoint("/api/users/me/email-verification", "POST", AUTH, session),
        Endpoint("/api/users/me/canvases", "GET", CANVAS, session),
        Endpoint("/api/canvases", "GET", CANVAS, optional),
        Endpoint("/api/canvases", "POST", CANVAS, session),
        Endpoint("/api/canvases/{id}", "GET", CANVAS, optional),
        Endpoint("/api/canvases/{id}", "HEAD", CANVAS, optional),
        Endpoint("/api/canvases/{id}", "PATCH", CANVAS, session),
        Endpoint("/api/canvases/{id}", "DELETE", CANVAS, session),
    ]


ENDPOINTS: tuple[Endpoint, ...] = tuple(_table())


class RouteTable:
    """Static paths by exact lookup; `/prefix/{id}` paths by their prefix and one final segment."""

    def __init__(self, endpoints: tuple[Endpoint, ...] = ENDPOINTS) -> None:
        self.static: dict[str, Route] = {}
        self.with_id: dict[str, Route] = {}
        for ep in endpoints:
            if ep.template.endswith("/{id}"):
                route = self.with_id.setdefault(ep.template[:-5], Route(ep.template))
            else:
                route = self.static.setdefault(ep.template, Route(ep.template))
            route.endpoints[ep.method] = ep
        for route in (*self.static.values(), *self.with_id.values()):
            route.allow = ", ".join(sorted({*route.endpoints, "OPTIONS"}))

    def match(self, path: str) -> Route | None:
        route = self.static.get(path)
        if route is not None:
            return route
        prefix, _, last = path.rpartition("/")
        if last in ("", ".", ".."):
            return None
        return self.with_id.get(prefix)

    @property
    def routes(self) -> list[Route]:
        return [*self.static.values(), *self.with_id.values()]
