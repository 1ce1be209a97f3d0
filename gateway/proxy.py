"""The /api proxy: route, authenticate, forward to the owning service, answer.

Called by the /api front (gateway/front.py) as plain ASGI, so a proxied request skips Litestar's
routing and request parsing, while every error still leaves through the app's problem-details
handlers (raised before any byte is sent; the front renders it).
Order per request: route (404/405) → body size (413) → CSRF Origin (403) → session (401/503) →
body (415 not JSON, 400 invalid UTF-8, JSON or too deep: shared/json_body.py) →
forward with the signed credential → answer (cookies set, re-sent or cleared).
"""

from __future__ import annotations

import functools
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec
import structlog
from litestar.types import HTTPScope, Receive, Send
from prometheus_client import Counter, Histogram

from gateway.client_ip import client_ip
from gateway.http1 import Response
from gateway.routes import SAFE_METHODS, Access, Endpoint, RouteTable
from gateway.sessions import Session, SessionValidator
from gateway.settings import GatewaySettings
from gateway.tokens import MalformedToken, cleared_cookie, presented_token, session_cookie
from gateway.upstreams import Upstream
from shared import internal_auth, json_body
from shared.access_log import ROUTE_KEY
from shared.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from shared.tokens import session_id_of

log = structlog.get_logger()

REQUESTS = Counter("canvasverse_gateway_requests_total", "Public API requests", ["route", "method", "status"])
LATENCY = Histogram(
    "canvasverse_gateway_request_duration_seconds",
    "Time in the gateway per public API request, upstream included",
    ["route", "upstream"],
)

# Request headers a service may see besides the gateway's own; everything else (cookies, tokens,
# identity and forwarding headers) stays at the gateway.
_FORWARDED = {
    b"content-type": "content-type",
    b"accept": "accept",
    b"if-none-match": "if-none-match",
    b"if-match": "if-match",
}
# Response headers that are the gateway's business or hop-by-hop.
_DROPPED = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-connection",
        b"date",
        b"server",
        b"x-request-id",
        b"x-session-ended",
        b"set-cookie",
    }
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # bounded metric labels
_BUFFERED_MAX = 256 * 1024  # answers up to this size are read whole; larger ones stream through
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_SAFE_QUERY = _SAFE_PATH + "?%"


# Label lookups cost a lock and a tuple per call; the label sets are few (routes x methods x statuses).
@functools.cache
def requests_counter(route: str, method: str, status: int) -> Any:
    return REQUESTS.labels(route, method, str(status))


@functools.cache
def _latency(route: str, upstream: str) -> Any:
    return LATENCY.labels(route, upstream)


class _Issued(msgspec.Struct, rename="camel"):
    token: str
    expires_at: datetime


_issued_decoder = msgspec.json.Decoder(_Issued)


class Proxy:
    def __init__(self, settings: GatewaySettings, table: RouteTable | None = None) -> None:
        self.settings = settings
        self.table = table or RouteTable()
        self.secret = settings.secret
        self.allowed_origins = frozenset(o.encode() for o in settings.allowed_origins)
        self.trusted_proxies = frozenset(settings.trusted_proxies)
        self.secure = settings.cookie_secure
        self.body_limit = settings.body_limit
        self.upstreams = {
            "auth": Upstream.from_settings("auth", settings.auth_url, settings),
            "canvas": Upstream.from_settings("canvas", settings.canvas_url, settings),
        }
        self.password_upstream = Upstream.from_settings(
            "auth-password", settings.auth_url, settings, pool_size=settings.password_pool_size, pool_wait=0.0
        )
        self.validator: SessionValidator | None = None

    @property
    def clients(self) -> list[Upstream]:
        """Every upstream client, for starting and closing them."""
        return [*self.upstreams.values(), self.password_upstream]

    async def handle(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        template, upstream, status = "unmatched", "none", 500
        method = scope["method"]
        try:
            path = scope["path"]  # normalised by the /api front (gateway/front.py)
            route = self.table.match(path)
            if route is None:
                raise NotFound("Not Found")
            template = route.template
            scope["state"][ROUTE_KEY] = template  # named in the access log
            endpoint = route.endpoints.get(method)
            if endpoint is None:
                if method == "OPTIONS":
                    status = 204
                    await _send_empty(send, 204, [(b"allow", route.allow.encode())])
                    return
                raise MethodNotAllowed(route.allow)
            upstream = endpoint.upstream
            status = await self._forward(scope, receive, send, endpoint, path)
        except Exception as exc:
            status = getattr(exc, "status_code", 500)
            raise
        finally:
            requests_counter(template, method if method in _METHODS else "OTHER", status).inc()
            _latency(template, upstream).observe(time.perf_counter() - started)

    async def _forward(
        self, scope: HTTPScope, receive: Receive, send: Send, endpoint: Endpoint, path: str
    ) -> int:
        headers = dict(scope["headers"])
        method = endpoint.method
        length = headers.get(b"content-length")
        if length is not None and _int(length) > self.body_limit:
            raise _too_large(self.body_limit)
        rid: str = scope["state"]["request_id"]
        token, from_cookie, session = await self._authenticate(endpoint, headers, rid)
        body = None
        if method not in SAFE_METHODS:
            if length is not None and length.strip() not in (b"", b"0"):
                json_body.check_type(headers.get(b"content-type"))  # 415 before the body is read
            body = await json_body.read_body(receive, self.body_limit)
            json_body.check(body, headers.get(b"content-type"))
        forwarded = {name: v.decode("latin-1") for k, name in _FORWARDED.items() if (v := headers.get(k))}
        if b"if-match" in headers:  # several lines are one list (RFC 9110 5.3); dict() kept the last
            forwarded["if-match"] = ", ".join(
                v.decode("latin-1") for k, v in scope["headers"] if k == b"if-match"
            )
        forwarded["x-request-id"] = rid
        if endpoint.starts_session and (agent := headers.get(b"user-agent")):
            forwarded[internal_auth.CLIENT_USER_AGENT] = agent.decode("latin-1")
        forwarded[internal_auth.HEADER] = internal_auth.sign(
            self.secret,
            audience=endpoint.upstream,
            api_only=True,
            user_id=session.user_id if session else None,
            session_id=session.session_id if session else None,
            request_id=rid,
            client_ip=client_ip(scope, self.trusted_proxies),
        )
        upstream = self.password_upstream if endpoint.hashes else self.upstreams[endpoint.upstream]
        resp = await upstream.request(method, _path_qs(path, scope), headers=forwarded, body=body)
        try:
            cookie_token = token if from_cookie else None
            return await self._answer(
                send, upstream, resp, endpoint=endpoint, cookie_token=cookie_token, session=session
            )
        finally:
            resp.release()

    async def _authenticate(
        self, endpoint: Endpoint, headers: dict[bytes, bytes], rid: str
    ) -> tuple[str | None, bool, Session | None]:
        origin = headers.get(b"origin")
        if endpoint.access is Access.PUBLIC:
            if origin is not None and origin not in self.allowed_origins:
                raise Forbidden("Origin not allowed")
            return None, False, None
        try:
            token, from_cookie = presented_token(headers.get(b"authorization"), headers.get(b"cookie"))
        except MalformedToken as exc:
            raise self._unauthorized("Malformed session token", clear=exc.from_cookie) from exc
        if token is None:
            if endpoint.access is Access.SESSION:
                raise self._unauthorized("Authentication required", clear=False)
            return None, False, None
        if from_cookie and endpoint.method not in SAFE_METHODS and origin not in self.allowed_origins:
            raise Forbidden("Cookie-authenticated changes need an allowed Origin")
        assert self.validator is not None
        session = await self.validator.validate(session_id_of(token), rid)
        if session is None:
            raise self._unauthorized("Invalid or expired session", clear=from_cookie)
        return token, from_cookie, session

    def _unauthorized(self, detail: str, *, clear: bool) -> Exception:
        headers = {"WWW-Authenticate": "Bearer"}
        if clear:
            headers["Set-Cookie"] = cleared_cookie(secure=self.secure)
        return Unauthorized(detail, headers=headers)

    async def _answer(
        self,
        send: Send,
        upstream: Upstream,
        resp: Response,
        *,
        endpoint: Endpoint,
        cookie_token: str | None,
        session: Session | None,
    ) -> int:
        status = resp.status
        headers: list[tuple[bytes, bytes]] = []
        session_ended = False
        for key, value in resp.raw_headers:
            name = key.lower()
            if name in _DROPPED:
                session_ended = session_ended or name == b"x-session-ended"
                continue
            headers.append((name, value))
        body: bytes | None = None
        cookie: str | None = None
        if endpoint.starts_session and status in (200, 201):
            body = await upstream.read(resp)
            cookie = self._issued_cookie(body)
        elif session_ended and status == 204:
            cookie = cleared_cookie(secure=self.secure)
        elif cookie_token is not None and session is not None and session.renewed:
            cookie = session_cookie(cookie_token, session.expires_at, secure=self.secure)
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode()))
        if endpoint.method == "HEAD":
            await _send_empty(send, status, headers)
            return status
        length = resp.content_length
        if body is None and length is not None and length <= _BUFFERED_MAX:
            body = await upstream.read(resp)
        if body is not None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        async for chunk in resp.iter_chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return status

    def _issued_cookie(self, body: bytes) -> str | None:
        try:
            issued = _issued_decoder.decode(body)
        except msgspec.DecodeError:
            log.error("session_response_unreadable")
            return None
        return session_cookie(issued.token, issued.expires_at, secure=self.secure)


def _path_qs(path: str, scope: HTTPScope) -> str:
    qs: bytes = scope["query_string"]
    quoted = quote(path, safe=_SAFE_PATH)
    if not qs:
        return quoted
    return f"{quoted}?{quote(qs.decode('latin-1'), safe=_SAFE_QUERY)}"


def _int(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest("Invalid Content-Length") from None


def _too_large(limit: int) -> Exception:
    return PayloadTooLarge(f"Request body larger than {limit} bytes")


async def _send_empty(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
