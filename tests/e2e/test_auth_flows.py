"""Every auth and users flow of docs/api.md, through the real gateway, auth service and relay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.http import ALLOWED_ORIGIN, Client, bearer, cookie
from tests.support.processes import url_of
from tests.support.system import System, gateway_process
from tests.support.users import PASSWORD, login, new_email, signup

pytestmark = pytest.mark.e2e


def set_cookie(reply) -> dict[str, str]:  # type: ignore[no-untyped-def]
    name_value, *attrs = [p.strip() for p in reply.headers["Set-Cookie"].split(";")]
    parsed = dict(a.partition("=")[::2] for a in attrs)
    parsed["value"] = name_value.partition("=")[2]
    return {k.lower(): v for k, v in parsed.items()}


async def test_signup_login_and_me(http: Client, system: System) -> None:
    email = new_email()
    reply = await http(
        "POST",
        f"{system.url}/api/auth/signup",
        json={"email": email.upper(), "password": PASSWORD, "name": "Ada"},
    )
    assert reply.status == 201
    body = reply.json()
    assert body["user"]["email"] == email
    assert body["user"]["name"] == "Ada"
    assert set_cookie(reply)["value"] == body["token"]
    assert (
        await http("POST", f"{system.url}/api/auth/signup", json={"email": email, "password": PASSWORD})
    ).status == 409
    reply = await login(http, system.url, email)
    assert reply.status == 200
    token = reply.json()["token"]
    assert set_cookie(reply)["value"] == token
    assert {"httponly", "secure", "path", "samesite", "max-age"} <= set_cookie(reply).keys()
    for auth in (bearer(token), cookie(token)):
        me = await http("GET", f"{system.url}/api/users/me", headers=auth)
        assert me.status == 200
        assert me.json()["id"] == body["user"]["id"]


async def test_login_failures_are_one_generic_401(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    wrong = await login(http, system.url, user.email, "wrong password!")
    unknown = await login(http, system.url, new_email())
    assert wrong.status == unknown.status == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert "Set-Cookie" not in wrong.headers
    malformed = await http("POST", f"{system.url}/api/auth/login", json={"email": 5, "password": PASSWORD})
    assert malformed.status == 422


async def test_login_throttle_through_the_gateway(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    for _ in range(10):
        assert (await login(http, system.url, user.email, "wrong password!")).status == 401
    throttled = await login(http, system.url, user.email)
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) >= 1


async def test_logout_ends_the_session_everywhere_at_once(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    assert (await user.call("GET", "/api/users/me")).status == 200  # now cached by the gateway
    reply = await http(
        "POST", f"{system.url}/api/auth/logout", headers={**cookie(user.token), "Origin": ALLOWED_ORIGIN}
    )
    assert reply.status == 204
    assert set_cookie(reply)["max-age"] == "0"
    assert "X-Session-Ended" not in reply.headers
    assert (await user.call("GET", "/api/users/me")).status == 401


async def test_sessions_list_and_revoke(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    second = (await login(http, system.url, user.email)).json()["token"]
    third = (await login(http, system.url, user.email)).json()["token"]
    for token in (second, third):
        assert (await http("GET", f"{system.url}/api/users/me", headers=bearer(token))).status == 200
    listed = (await user.call("GET", "/api/auth/sessions")).json()["items"]
    assert len(listed) == 3
    assert [s["current"] for s in listed] == [False, False, True]  # newest first; the caller's is oldest
    assert [s["createdAt"] for s in listed] == sorted((s["createdAt"] for s in listed), reverse=True)
    newest = listed[0]["id"]
    assert (await user.call("DELETE", f"/api/auth/sessions/{newest}")).status == 204
    assert (await http("GET", f"{system.url}/api/users/me", headers=bearer(third))).status == 401
    other = await signup(http, system.url)
    other_session = (await other.call("GET", "/api/auth/sessions")).json()["items"][0]["id"]
    assert (await user.call("DELETE", f"/api/auth/sessions/{other_session}")).status == 404
    assert (await user.call("DELETE", "/api/auth/sessions")).status == 204
    assert (await http("GET", f"{system.url}/api/users/me", headers=bearer(second))).status == 401
    assert (await user.call("GET", "/api/users/me")).status == 200
    current = listed[2]["id"]
    reply = await user.call("DELETE", f"/api/auth/sessions/{current}")
    assert reply.status == 204
    assert set_cookie(reply)["max-age"] == "0"
    assert (await user.call("GET", "/api/users/me")).status == 401


async def test_profile_and_password_changes(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    other = await login(http, system.url, user.email)
    assert (await user.call("PATCH", "/api/users/me", json={"name": "Grace"})).json()["name"] == "Grace"
    new_email_ = new_email()
    assert (await user.call("PATCH", "/api/users/me", json={"email": new_email_})).status == 403
    reply = await user.call("PATCH", "/api/users/me", json={"email": new_email_, "currentPassword": PASSWORD})
    assert reply.status == 200
    assert reply.json()["email"] == new_email_
    taken = await signup(http, system.url)
    reply = await user.call(
        "PATCH", "/api/users/me", json={"email": taken.email, "currentPassword": PASSWORD}
    )
    assert reply.status == 409
    body = {"currentPassword": "not it at all", "newPassword": "a new password"}
    assert (await user.call("POST", "/api/users/me/password", json=body)).status == 403
    body["currentPassword"] = PASSWORD
    assert (await user.call("POST", "/api/users/me/password", json=body)).status == 204
    assert (
        await http("GET", f"{system.url}/api/users/me", headers=bearer(other.json()["token"]))
    ).status == 401
    assert (await user.call("GET", "/api/users/me")).status == 200
    assert (await login(http, system.url, new_email_, "a new password")).status == 200


async def test_csrf_with_the_real_services(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    canvas = {"title": "t", "type": "p5", "code": ""}
    no_origin = await http("POST", f"{system.url}/api/canvases", json=canvas, headers=cookie(user.token))
    assert no_origin.status == 403
    allowed = {**cookie(user.token), "Origin": ALLOWED_ORIGIN}
    assert (await http("POST", f"{system.url}/api/canvases", json=canvas, headers=allowed)).status == 201
    evil = {"Origin": "http://evil.example"}
    assert (await http("POST", f"{system.url}/api/auth/login", json={}, headers=evil)).status == 403


async def test_spoofed_identity_is_ignored_by_the_services(http: Client, system: System) -> None:
    alice, bob = await signup(http, system.url), await signup(http, system.url)
    spoof = {"X-User-Id": bob.id, "X-Internal-Auth": "v1.forged.mac", "X-Forwarded-For": "10.1.1.1"}
    assert (await alice.call("GET", "/api/users/me", headers=spoof)).json()["id"] == alice.id
    anonymous = await http("GET", f"{system.url}/api/users/me", headers=spoof)
    assert anonymous.status == 401


async def test_sessions_show_the_client_device_and_address(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    agent = "Mozilla/5.0 (X11; Linux x86_64) e2e " + "y" * 300
    reply = await http(
        "POST",
        f"{system.url}/api/auth/login",
        json={"email": user.email, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert reply.status == 200
    token = reply.json()["token"]
    items = (await http("GET", f"{system.url}/api/auth/sessions", headers=bearer(token))).json()["items"]
    current = next(item for item in items if item["current"])
    assert current["userAgent"] == agent[:256]
    assert current["ip"] == "127.0.0.1"
    # The gateway's own User-Agent never stands in for the client's.
    assert all(item["userAgent"] != "canvas-verse-gateway" for item in items)


async def test_a_revoked_token_fails_every_request_sent_after_the_revocation_under_load(
    http: Client, system: System, data_dir: Path
) -> None:
    """Each gateway process remembers sessions (GATEWAY_SESSION_MEMORY_TTL): 8 readers on two gateway
    processes read with one token while another session of the user revokes it through one of them.
    Every read sent after the revocation's answer arrived is 401, in both processes."""
    second, _ = gateway_process("gateway-second", data_dir / "logs" / "e2e", system.gateway_env)
    second.start()
    try:
        user = await signup(http, system.url)
        token = (await login(http, system.url, user.email)).json()["token"]
        gateways = [system.url, url_of(second)]
        ledger: list[tuple[float, int]] = []
        revoked_at = float("inf")
        warm, done = asyncio.Event(), asyncio.Event()

        async def reader(url: str) -> None:
            while not done.is_set():
                sent = time.monotonic()
                reply = await http("GET", f"{url}/api/users/me", headers=bearer(token))
                ledger.append((sent, reply.status))
                if len(ledger) >= 200:
                    warm.set()  # both processes remember the session by now
                if sum(1 for t, _ in ledger[-400:] if t > revoked_at) >= 400:
                    done.set()

        readers = [asyncio.ensure_future(reader(gateways[i % 2])) for i in range(8)]
        await warm.wait()
        target = next(
            s["id"]
            for s in (await user.call("GET", "/api/auth/sessions")).json()["items"]
            if not s["current"]
        )
        assert (await user.call("DELETE", f"/api/auth/sessions/{target}")).status == 204
        revoked_at = time.monotonic()
        await asyncio.gather(*readers)
    finally:
        second.stop()
    before = [status for sent, status in ledger if sent < revoked_at]
    after = [status for sent, status in ledger if sent > revoked_at]
    assert set(before) <= {200, 401}
    assert before.count(200) >= 200
    assert len(after) >= 400
    assert set(after) == {401}
