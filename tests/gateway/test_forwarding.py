"""Routing, request ids, identity stripping and forwarding, against the stub upstream over HTTP."""

from __future__ import annotations

import uuid

import pytest

from shared import internal_auth
from tests.support.http import Client, bearer, cookie
from tests.support.problems import assert_problem
from tests.support.stubs import Stub

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    "path", ["/api", "/api/", "/api/nope", "/apix", "/api/canvases/a/b", "/api/canvases/..", "/internal/x"]
)
async def test_unknown_paths_are_404_before_auth(http: Client, gateway: str, path: str) -> None:
    assert_problem(await http("GET", gateway + path), 404, new_request_id=True)


async def test_internal_routes_are_never_reachable(http: Client, gateway: str) -> None:
    reply = await http("POST", f"{gateway}/internal/sessions/validate", json={"sessionId": "0" * 64})
    assert_problem(reply, 404, new_request_id=True)
    reply = await http("POST", f"{gateway}/api/../internal/sessions/validate", json={"sessionId": "0" * 64})
    assert reply.status == 404


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/canvases", "GET, OPTIONS, POST"),
        ("POST", "/api/canvases/123", "DELETE, GET, HEAD, OPTIONS, PATCH"),
        ("GET", "/api/auth/login", "OPTIONS, POST"),
        ("PUT", "/api/users/me", "DELETE, GET, OPTIONS, PATCH"),
    ],
)
async def test_wrong_method_is_405_with_allow(
    http: Client, gateway: str, method: str, path: str, allow: str
) -> None:
    reply = await http(method, gateway + path)
    assert_problem(reply, 405, new_request_id=True)
    assert reply.headers["Allow"] == allow


async def test_options_answers_allow_without_auth(http: Client, gateway: str) -> None:
    reply = await http("OPTIONS", f"{gateway}/api/users/me")
    assert reply.status == 204
    assert reply.headers["Allow"] == "DELETE, GET, OPTIONS, PATCH"


async def test_request_id_is_kept_when_valid_and_forwarded(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases/abc", headers={"X-Request-Id": "trace-1.A_b"})
    assert reply.status == 200
    assert reply.headers["X-Request-Id"] == "trace-1.A_b"
    echoed = reply.json()
    assert echoed["headers"]["x-request-id"] == "trace-1.A_b"
    assert echoed["credential"]["rid"] == "trace-1.A_b"


async def test_upstream_calls_name_the_gateway_and_ask_for_no_encoding(http: Client, gateway: str) -> None:
    reply = await http(
        "GET",
        f"{gateway}/api/canvases/abc",
        headers={"User-Agent": "client/1.0", "Accept-Encoding": "gzip, br"},
    )
    assert reply.status == 200
    seen = reply.json()["headers"]
    assert seen["user-agent"] == "canvas-verse-gateway"
    assert seen["accept-encoding"] == "identity"


async def test_one_request_id_in_the_answer_whatever_the_upstream_sent(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases/abc", headers={"X-Request-Id": "trace-2"})
    assert reply.headers.getall("X-Request-Id") == ["trace-2"]


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, "semi;colon"])
async def test_malformed_request_id_is_replaced(http: Client, gateway: str, sent: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases/abc", headers={"X-Request-Id": sent})
    rid = reply.headers["X-Request-Id"]
    uuid.UUID(rid)
    assert reply.json()["credential"]["rid"] == rid


async def test_spoofed_identity_headers_never_reach_the_service(
    http: Client, gateway: str, upstream: Stub
) -> None:
    token, sid = await upstream.session("real-user")
    forged = internal_auth.sign(b"x" * 32, audience="canvas", user_id="admin")
    spoofed = {
        "X-Internal-Auth": forged,
        "X-User-Id": "admin",
        "X-Session-Id": "f" * 64,
        "X-Forwarded-For": "10.9.9.9",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
        "Forwarded": "for=10.9.9.9",
        "X-Real-Ip": "10.9.9.9",
    }
    reply = await http(
        "PATCH", f"{gateway}/api/canvases/abc?x=1", headers={**spoofed, **bearer(token)}, json={}
    )
    assert reply.status == 200
    seen = reply.json()
    assert seen["credential"] == {
        "uid": "real-user",
        "sid": sid,
        "rid": reply.headers["X-Request-Id"],
        "ip": "127.0.0.1",
    }
    forwarded = {k.lower() for k in seen["headers"]}
    for name in (*spoofed, "Authorization", "Cookie"):
        if name.lower() != "x-internal-auth":
            assert name.lower() not in forwarded
    assert seen["headers"]["x-internal-auth"] != forged
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
        "PATCH",
        "/api/canvases/abc",
        "x=1",
        "{}",
    )


async def test_anonymous_reads_pass_without_identity(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases?type=x&tag=y")
    assert reply.status == 200
    assert reply.json()["credential"]["uid"] is None
    assert reply.json()["query"] == "type=x&tag=y"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/auth/logout"),
        ("GET", "/api/auth/sessions"),
        ("DELETE", "/api/auth/sessions/" + "a" * 64),
        ("GET", "/api/users/me"),
        ("POST", "/api/users/me/password"),
        ("GET", "/api/users/me/canvases"),
        ("POST", "/api/canvases"),
        ("PATCH", "/api/canvases/abc"),
        ("DELETE", "/api/canvases/abc"),
    ],
)
async def test_session_routes_need_a_session(http: Client, gateway: str, method: str, path: str) -> None:
    reply = await http(method, gateway + path, json={})
    assert_problem(reply, 401, new_request_id=True)
    assert reply.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer " + "A" * 32},
        {"Cookie": "session=%00%ff"},
        {"Cookie": "session=" + "a" * 200},
    ],
)
async def test_malformed_tokens_are_401_never_500(
    http: Client, gateway: str, headers: dict[str, str]
) -> None:
    for path in ("/api/users/me", "/api/canvases/abc"):
        reply = await http("GET", gateway + path, headers=headers)
        assert_problem(reply, 401, new_request_id=True)
        assert reply.headers["WWW-Authenticate"] == "Bearer"


async def test_unknown_token_is_401_even_on_public_reads(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases/abc", headers=bearer("a" * 32))
    assert_problem(reply, 401, new_request_id=True)


async def test_bearer_wins_over_cookie(http: Client, gateway: str, upstream: Stub) -> None:
    cookie_token, _ = await upstream.session("cookie-user")
    bearer_token, _ = await upstream.session("bearer-user")
    reply = await http(
        "GET", f"{gateway}/api/users/me", headers={**cookie(cookie_token), **bearer(bearer_token)}
    )
    assert reply.json()["credential"]["uid"] == "bearer-user"


async def test_head_is_forwarded_without_body(http: Client, gateway: str) -> None:
    reply = await http("HEAD", f"{gateway}/api/canvases/abc")
    assert reply.status == 200
    assert reply.body == b""


async def test_large_answers_stream_through_whole(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases/big")
    assert reply.status == 200
    assert reply.body == b"x" * (16 * 65536)


async def test_service_headers_of_its_own_pass_internal_ones_do_not(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/canvases/abc")
    assert reply.headers["X-Upstream"] == "stub"
    assert "X-Session-Ended" not in reply.headers
    assert len(reply.headers.getall("X-Request-Id")) == 1


async def test_bodies_over_the_limit_are_413(http: Client, gateway: str, upstream: Stub) -> None:
    token, _ = await upstream.session()
    too_big = b"x" * (2 * 1024 * 1024 + 1)
    reply = await http("POST", f"{gateway}/api/canvases", data=too_big, headers=bearer(token))
    assert_problem(reply, 413, new_request_id=True)

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield b"y" * (1024 * 1024)

    reply = await http("POST", f"{gateway}/api/canvases", data=chunks(), headers=bearer(token))
    assert_problem(reply, 413, new_request_id=True)
    exactly = b'"' + b"z" * (2 * 1024 * 1024 - 2) + b'"'  # a JSON string of exactly the limit
    headers = {**bearer(token), "Content-Type": "application/json"}
    reply = await http("POST", f"{gateway}/api/canvases", data=exactly, headers=headers)
    assert reply.status == 200
    assert len(reply.json()["body"]) == len(exactly)


async def test_paths_are_normalised_like_the_services(http: Client, gateway: str) -> None:
    for path in ("/api/canvases/", "/api//canvases", "/api/canvases/abc/"):
        reply = await http("GET", gateway + path)
        assert reply.status == 200, path
    assert (await http("GET", f"{gateway}/api/canvases/%2e%2e")).status == 404


async def test_if_match_is_forwarded_as_one_list(http: Client, gateway: str) -> None:
    reply = await http(
        "GET", f"{gateway}/api/canvases/abc", headers=[("If-Match", '"a.1"'), ("If-Match", 'W/"b", "c"')]
    )
    assert reply.status == 200
    assert reply.json()["headers"]["if-match"] == '"a.1", W/"b", "c"'
