"""The one middleware every route of a service passes: its metrics, the internal credential and the
JSON body, in one layer (issue 18).

Three Litestar route middlewares did this before, each a layer of its own: Prometheus's metrics
(shared/ops.py), the credential check and the body check. Each wrapped the call once more, and two
matched the path against their exclusion patterns on every request (bench/FINDINGS.md). And the
metrics layer sat outside the other two's refusals: a 401, 400, 413 or 415 they raised went past it
to Litestar's exception handler, so the metrics counted every refused request as a 200.

`ServiceRouteMiddleware` does, in this order, for every route but `/health` and `/metrics` (which
it leaves alone, as Litestar's Prometheus middleware did):

1. the metrics: Litestar's Prometheus metrics, the same names, labels and values
   (`CachedLabelsPrometheusMiddleware`, whose cached children it uses), now for refusals too, with
   their status;
2. the internal credential (`shared.auth_middleware.CredentialCheck`), unless the route is open: 401;
3. on a method that carries a body, the body, read once and checked
   (`shared.json_body.checked_receive`): 415, 400 or 413;
4. on a route that declares `opt=SIGNED_IN_ONLY` (shared/caller.py), a signed-in caller: 401 for an
   anonymous call, before its body is decoded. (A Litestar guard did this before; Litestar copies
   the route handler for each guard on each request.)

A refusal is raised, as before, and rendered by Litestar's exception handler (problem details).
"""

from __future__ import annotations

import dataclasses

from litestar.plugins.prometheus import PrometheusConfig
from litestar.types import ASGIApp, Receive, Scope, Send

from shared.auth_middleware import CredentialCheck
from shared.caller import NEEDS_SESSION, SIGNED_IN, caller_in
from shared.errors import Unauthorized
from shared.json_body import BODY_METHODS, checked_receive
from shared.ops import CachedLabelsPrometheusMiddleware


class ServiceRouteMiddleware(CachedLabelsPrometheusMiddleware):
    def __init__(
        self, app: ASGIApp, config: PrometheusConfig, credentials: CredentialCheck, body_limit: int
    ) -> None:
        # The metrics' exclusions are applied here, by route, not by Litestar's path patterns.
        super().__init__(app, dataclasses.replace(config, exclude=None))
        self.unmetered = frozenset(config.exclude or ())
        self.credentials = credentials
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path_template"] in self.unmetered:  # /health, /metrics: open, bodiless
            await self.app(scope, receive, send)
            return
        await self.measured(self._checked, scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        cred = None
        if not self.credentials.is_open(scope):
            cred = scope["user"] = scope["auth"] = self.credentials(scope)
        if scope.get("method") in BODY_METHODS:
            receive = await checked_receive(scope, receive, self.body_limit)
        if cred is not None and scope["route_handler"].opt.get(SIGNED_IN) and caller_in(cred) is None:
            raise Unauthorized(NEEDS_SESSION)
        await self.app(scope, receive, send)
