"""The door for password work: per-client admission to the routes that hash a password.

A client may have `GATEWAY_PASSWORD_CLIENT_IN_FLIGHT` requests to those routes (signup, login, a
reset's confirmation, password and email changes, account deletion) in flight in this process; the
next one is refused with 429 + `Retry-After` here, before any other part of the gateway runs.

Why in front of everything (issue 14): a flood of refused requests must cost as little as possible
and hold no turn of the event loop that the other clients' requests are waiting for. Served by
uvicorn with `shared.server:LimitedHttpToolsProtocol` (every deployment here), the refusal is
written from the HTTP parser's callback through the protocol's `fast_answer` hook: no ASGI task, no
middleware, no framework; and for a plain request to a route with a fixed path (the shape a flood
has), from its raw bytes before the parser runs (`raw_refusal`, the protocol's `raw_refusals`
hook: 18 against 40 µs of CPU per refusal). Served any other way, the same check runs first in the /api front
(gateway/front.py), after the request id and before CORS and the rate limit: two `send`s with
prebuilt headers. Either way the answer carries what every
`/api` answer carries (X-Request-Id, `X-Content-Type-Options`, `Cache-Control: no-store`), is
counted in `canvasverse_gateway_requests_total` like any other answer, and has its access-log line.

The auth service keeps its own count of password work per client across processes; this one only
stops a flood before it costs an upstream call.
"""

from __future__ import annotations

import logging

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter

from gateway.client_ip import client_ip
from gateway.proxy import requests_counter
from gateway.routes import Endpoint, RouteTable
from shared.access_log import LOGGER, ROUTE_KEY
from shared.request_id import valid_request_id
from shared.server import FastAnswer

REFUSED_DETAIL = "Too many password checks in flight from this client; try again shortly"
_BODY = b'{"status":429,"title":"Too Many Requests","detail":"' + REFUSED_DETAIL.encode() + b'"}'
_HEADERS = [
    (b"content-type", b"application/problem+json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"retry-after", b"1"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]
_RAW_HEAD = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    + b"".join(b"%s: %s\r\n" % header for header in _HEADERS)
    + b"x-request-id: "
)
REFUSED = Counter(
    "canvasverse_gateway_password_refused_total",
    "Requests to password routes refused (429) because the client had too many in flight",
)


class PasswordDoor:
    def __init__(
        self, app: ASGIApp, table: RouteTable, trusted_proxies: list[str], cap: int, *, access_log: bool
    ) -> None:
        self.app = app
        self.table = table
        self.trusted_proxies = frozenset(trusted_proxies)
        self.cap = cap
        self.in_flight: dict[str, int] = {}  # password requests in flight per client address
        self._raw = {
            f"{method} {route.template}".encode(): endpoint
            for route in table.static.values()
            for method, endpoint in route.endpoints.items()
            if endpoint.hashes
        }
        self._raw_targets = frozenset(self._raw)
        self.access_log = access_log and logging.getLogger(LOGGER).isEnabledFor(logging.INFO)
        self.log = structlog.get_logger(LOGGER)

    def fast_answer(self, scope: Scope) -> FastAnswer | None:
        """The refusal for a request that must be refused, written by the protocol; else None."""
        endpoint = self._hashing(scope) if scope["type"] == ScopeType.HTTP else None
        if endpoint is None:
            return None
        client = client_ip(scope, self.trusted_proxies)
        if self.in_flight.get(client, 0) < self.cap:
            return None
        raw = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        rid = valid_request_id(raw.decode("latin-1"))
        self._refused(endpoint, rid, client)
        return 429, [*_HEADERS[:1], *_HEADERS[2:], (b"x-request-id", rid.encode())], _BODY

    def raw_targets(self) -> frozenset[bytes]:
        """The request lines' `METHOD /path` of the password routes with a fixed path: what
        `raw_refusal` may answer from the raw bytes (shared/server.py)."""
        return self._raw_targets

    def raw_refusal(self, target: bytes, peer: str, request_id: bytes) -> bytes | None:
        """The whole HTTP/1.1 refusal for a request to `target` (one of `raw_targets`) from `peer`,
        or None: the protocol's cheapest path, before the request is parsed into a scope. A peer
        that is a trusted proxy is left to the scope's path, which reads X-Forwarded-For."""
        if peer in self.trusted_proxies or self.in_flight.get(peer, 0) < self.cap:
            return None
        rid = valid_request_id(request_id.decode("latin-1"))
        self._refused(self._raw[target], rid, peer)
        return _RAW_HEAD + rid.encode() + b"\r\n\r\n" + _BODY

    def _refused(self, endpoint: Endpoint, request_id: str, client: str) -> None:
        REFUSED.inc()
        requests_counter(endpoint.template, endpoint.method, 429).inc()
        if self.access_log:
            self.log.info(
                "access",
                method=endpoint.method,
                route=endpoint.template,
                status=429,
                duration_ms=0.0,
                request_id=request_id,
                client=client,
            )

    def _hashing(self, scope: Scope) -> Endpoint | None:
        method = scope.get("method")
        if method not in ("POST", "PATCH", "DELETE"):
            return None
        path: str = scope["path"]
        if not path.startswith("/api/"):
            return None
        while "//" in path:  # what Litestar's routing normalises, so no spelling escapes the count
            path = path.replace("//", "/")
        route = self.table.match(path.rstrip("/"))
        endpoint = route.endpoints.get(method) if route is not None else None
        return endpoint if endpoint is not None and endpoint.hashes else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._hashing(scope) if scope["type"] == ScopeType.HTTP else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        client = client_ip(scope, self.trusted_proxies)
        busy = self.in_flight.get(client, 0)
        if busy >= self.cap:  # (the access log and the request id are the middlewares' outside)
            REFUSED.inc()
            requests_counter(endpoint.template, endpoint.method, 429).inc()
            scope["state"][ROUTE_KEY] = endpoint.template
            await send({"type": "http.response.start", "status": 429, "headers": list(_HEADERS)})
            await send({"type": "http.response.body", "body": _BODY, "more_body": False})
            return
        self.in_flight[client] = busy + 1
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                if self.in_flight[client] <= 1:
                    del self.in_flight[client]
                else:
                    self.in_flight[client] -= 1

        async def send_releasing(message: Message) -> None:
            # The slot is free before the answer's last bytes leave: a client that sends its next
            # request as soon as it has the answer must find it free (it did not always when the
            # slot was freed after the handler returned, which may await more after its answer).
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            release()
