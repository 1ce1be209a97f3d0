"""What the edge adds: security headers on /api answers, /metrics kept off the public port, /ready
answering a flood from one check a second."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from devtools.processes import Process
from devtools.redis_server import free_port
from tests.support.http import ALLOWED_ORIGIN, Client, bearer
from tests.support.processes import url_of
from tests.support.stubs import Stub

pytestmark = pytest.mark.e2e


async def test_every_api_answer_has_nosniff_and_private_ones_no_store(
    http: Client, gateway: str, upstream: Stub
) -> None:
    token, _ = await upstream.session()
    private = [
        ("POST", "/api/auth/login", {"json": {"email": "a@example.com", "password": "x"}}),
        ("GET", "/api/auth/sessions", {"headers": bearer(token)}),
        ("GET", "/api/auth/sessions", {}),  # 401 from the gateway itself
        ("GET", "/api/users/me", {"headers": bearer(token)}),
        ("GET", "/api/users/me", {"headers": bearer("b" * 32)}),  # 401
        ("PUT", "/api/users/me", {"headers": bearer(token)}),  # 405
        ("POST", "/api/users/me/password", {"headers": bearer(token), "data": b"x"}),  # 415
        ("GET", "/api/users/nope", {}),  # 404
        ("OPTIONS", "/api/auth/login", {"headers": {"Origin": ALLOWED_ORIGIN}}),
    ]
    public = [
        ("GET", "/api/canvases", {}),
        ("GET", "/api/canvases/abc", {"headers": bearer(token)}),
        ("GET", "/api/nope", {}),
        ("GET", "/api/canvases/big", {}),  # streamed through
        (
            "OPTIONS",
            "/api/canvases",
            {"headers": {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}},
        ),
    ]
    for method, path, kwargs in [*private, *public]:
        reply = await http(method, gateway + path, **kwargs)
        what = f"{method} {path} -> {reply.status}"
        assert reply.headers.getall("X-Content-Type-Options") == ["nosniff"], what
        if (method, path, kwargs) in private:
            assert reply.headers.getall("Cache-Control") == ["no-store"], what
    for path in ("/health", "/ready", "/schema/openapi.json"):
        assert (await http("GET", gateway + path)).status == 200


async def test_metrics_are_not_on_the_public_port_by_default(
    http: Client, start_gateway: Callable[..., Process]
) -> None:
    port = free_port()
    gateway = url_of(start_gateway(metrics_allow="[]", metrics_port=port))
    await http("GET", f"{gateway}/api/canvases")
    for path in ("/metrics", "/metrics/", "/metrics?x=1"):
        reply = await http("GET", gateway + path)
        assert reply.status == 404, path
        assert reply.headers["Content-Type"] == "application/problem+json"
        assert b"canvasverse" not in reply.body
    scraped = await http("GET", f"http://127.0.0.1:{port}/metrics")
    assert scraped.status == 200
    assert 'canvasverse_gateway_requests_total{method="GET",route="/api/canvases",status="200"}' in (
        scraped.body.decode()
    )
    assert (await http("GET", f"http://127.0.0.1:{port}/api/canvases")).status == 404


async def test_a_flood_of_ready_costs_one_check_a_second(http: Client, gateway: str, upstream: Stub) -> None:
    before = (await upstream.state()).get("ready_checks", 0)
    started = time.monotonic()
    replies = await asyncio.gather(*(http("GET", f"{gateway}/ready") for _ in range(300)))
    elapsed = time.monotonic() - started
    assert [r.status for r in replies] == [200] * 300
    checks = (await upstream.state())["ready_checks"] - before
    # The gateway asks each service (the stub plays both) at most once a second; the stub's own
    # /ready runs its checks at most once a second too.
    assert checks <= math.ceil(elapsed) + 1, (checks, elapsed)


async def test_a_client_with_password_work_in_flight_gets_429_at_the_gateway(
    http: Client, start_gateway: Callable[..., Process], upstream: Stub
) -> None:
    gateway = url_of(start_gateway(password_client_in_flight=2))
    login = {"email": "a@example.com", "password": "x"}
    await upstream.state(hold_logins=True)
    try:
        held = [asyncio.create_task(http("POST", f"{gateway}/api/auth/login", json=login)) for _ in range(2)]
        for _ in range(200):  # until both reached the service
            if (await upstream.state()).get("logins_waiting") == 2:
                break
            await asyncio.sleep(0.05)
        assert (await upstream.state())["logins_waiting"] == 2
        for spelling in ("/api/auth/signup", "/api/auth//login/", "/api/users/me/password"):
            refused = await http(
                "POST", f"{gateway}{spelling}", json=login, headers={"X-Request-Id": "flood-1"}
            )
            assert refused.status == 429, spelling
            assert refused.headers["Retry-After"] == "1"
            assert refused.headers["Content-Type"] == "application/problem+json"
            assert refused.headers["X-Request-Id"] == "flood-1"  # what every answer carries
            assert refused.headers["X-Content-Type-Options"] == "nosniff"
            assert refused.headers["Cache-Control"] == "no-store"
            assert refused.json()["status"] == 429
        assert (await upstream.state())["logins_waiting"] == 2  # never forwarded
        await _refused_on_one_connection(gateway)
        assert (await http("GET", f"{gateway}/api/canvases")).status == 200  # hashes nothing: unaffected
    finally:
        await upstream.state(hold_logins=False)
    assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
    assert (await http("POST", f"{gateway}/api/auth/login", json=login)).status == 200


async def _refused_on_one_connection(gateway: str) -> None:
    """Written by the protocol's fast path (shared/server.py: no ASGI task, so none of uvicorn's
    default `date` header): the body of the refused request is skipped, the connection stays
    usable for the next request, and an HTTP/1.0 client gets `connection: close`."""
    parts = urlsplit(gateway)
    body = b'{"email": "a@example.com", "password": "x"}'
    post = b"POST /api/auth/signup HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    post += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(post)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 429 "), head
        assert b"\r\ndate:" not in head.lower()
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        assert b'"status":429' in await reader.readexactly(length)
        writer.write(b"GET /api/canvases HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 "), head
    finally:
        writer.close()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(post.replace(b"HTTP/1.1", b"HTTP/1.0"))
        answer = await asyncio.wait_for(reader.read(), 10)  # read() returns once the server closed
        assert answer.startswith(b"HTTP/1.1 429 "), answer[:100]
        assert b"\r\nconnection: close\r\n" in answer.lower()
    finally:
        writer.close()


async def test_refusals_from_the_raw_bytes_answer_as_the_parsed_ones(
    http: Client, start_gateway: Callable[..., Process], upstream: Stub
) -> None:
    """shared/server.py answers a refused password request from its raw bytes when it is one plain
    request; any other shape goes through the parser. Both must give the same answer, count in
    the same metric, and leave the connection usable."""
    gateway = url_of(start_gateway(password_client_in_flight=1))
    parts = urlsplit(gateway)
    body = b'{"email": "a@example.com", "password": "x"}'

    def post(extra: bytes = b"", path: bytes = b"/api/auth/login") -> bytes:
        head = b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n%s" % (path, extra)
        return head + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)

    async def answers(
        reader: asyncio.StreamReader, count: int
    ) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
        got = []
        for _ in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines[1:] if line)
            got.append((lines[0], headers, await reader.readexactly(int(headers[b"content-length"]))))
        return got

    async def refused_count() -> float:
        text = (await http("GET", f"{gateway}/metrics")).body.decode()
        line = next(
            x for x in text.splitlines() if x.startswith("canvasverse_gateway_password_refused_total ")
        )
        return float(line.split()[1])

    login = {"email": "a@example.com", "password": "x"}
    await upstream.state(hold_logins=True)
    held = asyncio.create_task(http("POST", f"{gateway}/api/auth/login", json=login))
    try:
        for _ in range(200):
            if (await upstream.state()).get("logins_waiting") == 1:
                break
            await asyncio.sleep(0.05)
        before = await refused_count()
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            writer.write(post(b"X-Request-Id: raw-1\r\n"))  # the raw path
            [raw] = await answers(reader, 1)
            writer.write(post(b"X-Request-Id: parsed-1\r\nConnection: keep-alive\r\n"))  # the parser's
            [parsed] = await answers(reader, 1)
            assert raw[0] == parsed[0] == b"HTTP/1.1 429 Too Many Requests"
            # Which path answered shows in the order of the headers (the raw answer is one prebuilt
            # block, the parser's path adds content-length last): the raw path did answer the first.
            assert list(raw[1])[:2] == [b"content-type", b"content-length"], list(raw[1])
            assert list(parsed[1])[-1] == b"content-length", list(parsed[1])
            assert raw[1].pop(b"x-request-id") == b"raw-1"
            assert parsed[1].pop(b"x-request-id") == b"parsed-1"
            assert raw[1] == parsed[1]
            assert raw[1][b"retry-after"] == b"1"
            assert raw[2] == parsed[2]
            assert b'"status":429' in raw[2]
            writer.write(post(b"X-Request-Id: not a valid id\r\n"))  # replaced, as everywhere
            [(_, headers, _)] = await answers(reader, 1)
            assert len(headers[b"x-request-id"]) == 36
            writer.write(post() + post(path=b"/api/auth/signup"))  # pipelined: the parser's way, in order
            assert [a[0] for a in await answers(reader, 2)] == [b"HTTP/1.1 429 Too Many Requests"] * 2
            writer.write(post()[:-5])  # the body not all there yet: the parser's way
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(post()[-5:])
            assert (await answers(reader, 1))[0][0] == b"HTTP/1.1 429 Too Many Requests"
            writer.write(b"GET /api/canvases HTTP/1.1\r\nHost: t\r\n\r\n")  # still usable
            assert (await answers(reader, 1))[0][0] == b"HTTP/1.1 200 OK"
        finally:
            writer.close()
        assert await refused_count() == before + 6
        assert (await upstream.state())["logins_waiting"] == 1  # none of them was forwarded
    finally:
        await upstream.state(hold_logins=False)
    assert (await held).status == 200
