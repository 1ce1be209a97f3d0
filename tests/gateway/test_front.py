"""The /api front (gateway/front.py): one layer doing what the request id, access log, edge headers,
CORS, exception handling, routing and rate-limit layers did, so its answers must read as theirs did,
to a browser too. Raw sockets where a client library would normalise the path first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from devtools.processes import Process
from tests.support.http import ALLOWED_ORIGIN, Client, bearer
from tests.support.problems import assert_problem
from tests.support.processes import url_of
from tests.support.stubs import Stub

pytestmark = pytest.mark.e2e


async def raw(url: str, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (a request line and headers, Connection: close added) as written; the answer."""
    parts = urlsplit(url)
    assert parts.hostname
    assert parts.port
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write((head.rstrip("\r\n") + "\r\nConnection: close\r\n\r\n").encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    top, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def test_an_error_reaches_a_browser_with_cors_request_id_and_edge_headers(
    http: Client, gateway: str
) -> None:
    reply = await http(
        "GET", f"{gateway}/api/users/me", headers={"Origin": ALLOWED_ORIGIN, "X-Request-Id": "front-1"}
    )
    assert_problem(reply, 401)
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN  # readable by the page
    assert reply.headers["X-Request-Id"] == "front-1"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"
    assert reply.headers["Cache-Control"] == "no-store"
    assert "RateLimit-Remaining" in reply.headers
    assert reply.json() == {
        "status": 401,
        "title": "Unauthorized",
        "detail": "Authentication required",
    }


async def test_a_proxied_answer_carries_the_rate_limit_and_cors_headers(
    http: Client, gateway: str, upstream: Stub
) -> None:
    token, _ = await upstream.session()
    reply = await http("GET", f"{gateway}/api/users/me", headers={**bearer(token), "Origin": ALLOWED_ORIGIN})
    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert reply.headers["Vary"] == "Origin"
    assert int(reply.headers["RateLimit-Remaining"]) >= 0
    assert reply.headers["RateLimit-Policy"].endswith("; w=60")
    preflight = await http(
        "OPTIONS",
        f"{gateway}/api/canvases",
        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]


async def test_every_spelling_of_a_path_is_the_path_the_router_matched(gateway: str, upstream: Stub) -> None:
    token, _ = await upstream.session()
    auth = f"Authorization: Bearer {token}"
    for spelling in ("/api/users/me", "/api//users/me/", "//api/users//me"):
        status, headers, body = await raw(gateway, f"GET {spelling} HTTP/1.1\r\nHost: test\r\n{auth}")
        assert status == 200, (spelling, body)
        assert headers["cache-control"] == "no-store", spelling  # private, however spelled
    for spelling in ("/apifoo", "/api", "/api/", "/api/internal/sessions/validate", "/api/canvases/a/b"):
        status, headers, body = await raw(gateway, f"GET {spelling} HTTP/1.1\r\nHost: test")
        assert status == 404, spelling
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["status"] == 404
        assert headers["x-content-type-options"] == "nosniff"


async def test_metrics_stay_off_the_public_port_however_the_path_is_spelled(
    start_gateway: Callable[..., Process],
) -> None:
    gateway = url_of(start_gateway(metrics_allow="[]", metrics_port=0))
    for spelling in ("/metrics", "//metrics", "/metrics/", "///metrics//"):
        status, _, body = await raw(gateway, f"GET {spelling} HTTP/1.1\r\nHost: test")
        assert status == 404, spelling
        assert b"canvasverse" not in body, spelling


async def test_an_invalid_host_is_a_400_problem(gateway: str) -> None:
    status, headers, body = await raw(gateway, "GET /api/canvases HTTP/1.1\r\nHost: bad host/")
    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 400


async def test_the_rate_limits_429_reaches_a_browser_as_a_problem_with_its_headers(
    http: Client, start_gateway: Callable[..., Process], upstream: Stub
) -> None:
    gateway = url_of(start_gateway(rate_limit=2, rate_limit_unit="day"))
    origin = {"Origin": ALLOWED_ORIGIN}
    replies = [await http("GET", f"{gateway}/api/canvases", headers=origin) for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 429]
    refused = replies[2]
    assert_problem(refused, 429)
    assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Limit"] == "2"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-Content-Type-Options"] == "nosniff"
    assert (await http("GET", f"{gateway}/health")).status == 200  # the limit is /api's
