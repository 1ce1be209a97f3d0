"""Bodies that are not JSON, not UTF-8, not valid or too deep: 415/400 problem+json on every route
that takes a body, at the gateway and at each service called directly, never a 500."""

from __future__ import annotations

import os
from typing import Any

import pytest

from shared import internal_auth
from shared.json_body import MAX_DEPTH
from tests.support.http import Client
from tests.support.problems import assert_problem
from tests.support.system import System
from tests.support.users import PASSWORD, User, signup

pytestmark = pytest.mark.e2e

JSON = "application/json"
NOT_JSON_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "application/jsonx",
]
BAD_BODIES = {
    "invalid utf-8": b'{"email": "\xff\xfe@example.com", "password": "\xc3"}',
    "invalid json": b'{"email": ',
    "trailing garbage": b"{} {}",
    "1000 nested arrays": b"[" * 1000 + b"]" * 1000,
    "deeper than the limit": b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    "deep objects": b'{"a":' * 200 + b"1" + b"}" * 200,
}


def body_routes(canvas_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every public route that takes a JSON body, with a valid body for it."""
    return [
        ("POST", "/api/auth/signup", {"email": "x@example.com", "password": PASSWORD}),
        ("POST", "/api/auth/login", {"email": "x@example.com", "password": PASSWORD}),
        ("POST", "/api/auth/password-reset", {"email": "x@example.com"}),
        ("POST", "/api/auth/password-reset/confirm", {"token": "a" * 32, "newPassword": PASSWORD}),
        ("POST", "/api/auth/email-verification/confirm", {"token": "a" * 32}),
        ("PATCH", "/api/users/me", {"name": "N"}),
        ("POST", "/api/users/me/password", {"currentPassword": PASSWORD, "newPassword": PASSWORD + "!"}),
        ("DELETE", "/api/users/me", {"password": PASSWORD}),
        ("POST", "/api/canvases", {"title": "t", "type": "p5", "code": "c"}),
        ("PATCH", f"/api/canvases/{canvas_id}", {"title": "t2"}),
    ]


async def _bad_body_answers(
    http: Client, base: str, routes: list[tuple[str, str, dict[str, Any]]], headers: dict[str, str]
) -> None:
    for method, path, _ in routes:
        url = base + path
        what = f"{method} {path}"
        for content_type in NOT_JSON_TYPES:
            reply = await http(
                method, url, data=b'{"a": 1}', headers={**headers, "Content-Type": content_type}
            )
            assert_problem(reply, 415, what=f"{what} as {content_type}")
        missing = await http(
            method, url, data=b'{"a": 1}', headers=headers, skip_auto_headers=["Content-Type"]
        )
        assert_problem(missing, 415, what=f"{what} without a Content-Type")
        for name, body in BAD_BODIES.items():
            for content_type in (JSON, "application/json; charset=utf-8"):
                reply = await http(method, url, data=body, headers={**headers, "Content-Type": content_type})
                assert_problem(reply, 400, what=f"{what} with {name} as {content_type}")


async def test_bad_bodies_through_the_gateway(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    canvas = await user.canvas()
    await _bad_body_answers(
        http, system.url, body_routes(canvas["id"]), {"Authorization": f"Bearer {user.token}"}
    )
    # Nothing changed, and the session still works: the bad DELETE and password change did nothing.
    assert (await user.call("GET", "/api/users/me")).status == 200
    assert (await user.call("GET", f"/api/canvases/{canvas['id']}")).json()["title"] == canvas["title"]


async def test_json_with_a_charset_and_at_the_depth_limit_is_accepted(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    reply = await user.call(
        "POST",
        "/api/canvases",
        data=b'{"title": "\xc3\xa9t\xc3\xa9", "type": "p5", "code": "c"}',
        headers={"Content-Type": "Application/JSON; charset=UTF-8"},
    )
    assert reply.status == 201, reply.body
    assert reply.json()["title"] == "été"
    # 32 levels is within the limit: the schema answers (422), not the depth check (400).
    nested = b'{"title": "t", "type": "p5", "code": "c", "tags": ' + b"[" * 31 + b"]" * 31 + b"}"
    reply = await user.call("POST", "/api/canvases", data=nested, headers={"Content-Type": JSON})
    assert_problem(reply, 422, what="31 arrays in an object")
    # A route without a body (logout) still needs no Content-Type.
    reply = await user.call("POST", "/api/auth/logout", skip_auto_headers=["Content-Type"])
    assert reply.status == 204


async def test_bad_bodies_at_the_services_directly(http: Client, system: System) -> None:
    user: User = await signup(http, system.url)
    canvas = await user.canvas()
    me = (await user.call("GET", "/api/users/me")).json()
    secret = os.environ["INTERNAL_SECRET"].encode()

    def headers(audience: str) -> dict[str, str]:
        credential = internal_auth.sign(secret, audience=audience, user_id=me["id"], session_id="s")
        return {internal_auth.HEADER: credential}

    routes = body_routes(canvas["id"])
    auth_base = system.auth.health_url.removesuffix("/health")  # type: ignore[union-attr]
    canvas_base = system.canvas.health_url.removesuffix("/health")  # type: ignore[union-attr]
    auth_routes = [r for r in routes if "/canvases" not in r[1]]
    await _bad_body_answers(http, auth_base, auth_routes, headers("auth"))
    await _bad_body_answers(http, canvas_base, [r for r in routes if "/canvases" in r[1]], headers("canvas"))
    internal = [("POST", "/internal/sessions/validate", {}), ("POST", "/internal/users/existing", {})]
    await _bad_body_answers(http, auth_base, internal, headers("auth"))
