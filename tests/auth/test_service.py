"""The service around the routes: the internal credential, ops routes, Redis outages, secrets in logs."""

from __future__ import annotations

import logging
import re
import time

import httpx
import pytest

from devtools.redis_server import RedisServer
from shared import internal_auth
from tests.asgi import ready_status
from tests.auth.support import PASSWORD, Account, Api, signed

ROUTES = [
    ("POST", "/api/auth/signup"),
    ("POST", "/api/auth/login"),
    ("GET", "/api/auth/sessions"),
    ("GET", "/api/users/me"),
    ("POST", "/internal/sessions/validate"),
    ("POST", "/internal/users/existing"),
]


def tampered(account: Account) -> str:
    """A credential for the account whose payload was swapped after signing."""
    good = signed(account.uid, account.sid)[internal_auth.HEADER]
    forged = signed("00000000-0000-0000-0000-000000000000", account.sid)[internal_auth.HEADER]
    return ".".join([good.split(".")[0], forged.split(".")[1], good.split(".")[2]])


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_the_credential_is_refused_when_missing_tampered_or_expired(
    client: httpx.AsyncClient, account: Account, method: str, path: str
) -> None:
    credentials = {
        "missing": {},
        "tampered": {internal_auth.HEADER: tampered(account)},
        "expired": signed(account.uid, account.sid, now=time.time() - internal_auth.DEFAULT_MAX_AGE - 5),
        "foreign": {
            internal_auth.HEADER: internal_auth.sign(b"x" * 32, audience="auth", user_id=account.uid)
        },
    }
    for name, headers in credentials.items():
        resp = await client.request(method, path, headers=headers, json={})
        assert resp.status_code == 401, name
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.headers["content-type"] == "application/problem+json"


async def test_a_user_id_that_is_not_a_uuid_is_refused(client: httpx.AsyncClient) -> None:
    resp = await client.get("/api/users/me", headers=signed("admin", "a" * 64))
    assert resp.status_code == 401


async def test_health_ready_and_metrics_are_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["checks"] == ["database", "migrations", "redis"]
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert "canvasverse" in metrics.text


async def test_unknown_paths_and_methods_are_problems(api: Api) -> None:
    missing = await api.call("GET", "/api/auth/nothing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await api.call("GET", "/api/auth/login")
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["allow"]
    assert wrong.headers["x-request-id"]


async def test_without_redis_login_fails_closed_and_ready_names_redis(
    api: Api, account: Account, redis_server: RedisServer
) -> None:
    redis_server.stop()
    try:
        resp = await api.login(account)
        assert resp.status_code == 503
        assert int(resp.headers["retry-after"]) > 0
        ready = await ready_status(api.client)  # /ready answers from a check up to 1 s old
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["redis"]
        # Revocation fails closed: its cache entry could not be purged, so it does not happen (503)
        # rather than answer 204 for a token whose cached entry comes back with Redis.
        logout = await api.call("POST", "/api/auth/logout", session=account)
        assert logout.status_code == 503
        assert (await api.validate(account.sid)).status_code == 200
    finally:
        redis_server.start()
    logout = await api.call("POST", "/api/auth/logout", session=account)
    assert logout.status_code == 204
    assert (await api.validate(account.sid)).status_code == 404
    assert (await api.login(account)).status_code == 200
    assert (await ready_status(api.client, 200)).status_code == 200  # the 503 is cached for 1 s


async def test_the_first_login_after_a_redis_restart_succeeds(
    api: Api, account: Account, redis_server: RedisServer
) -> None:
    """The throttle's pooled connection dies with the restart: its client retries on a new one."""
    assert (await api.login(account)).status_code == 200
    redis_server.restart()
    assert (await api.login(account)).status_code == 200


async def test_tokens_and_passwords_never_reach_the_logs(
    api: Api, unique_email: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        account = await api.signup(unique_email)
        token = await api.new_session(account)
        await api.call("POST", "/api/auth/login", json={"email": unique_email, "password": "wrong secret!"})
        body = {"currentPassword": PASSWORD, "newPassword": "another secret!"}
        await api.call("POST", "/api/users/me/password", session=account, json=body)
        await api.call("DELETE", "/api/users/me", session=account, json={"password": "another secret!"})
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "user_signed_up" in logged  # the capture works
    for secret in (PASSWORD, "wrong secret!", "another secret!", account.token, token):
        assert secret not in logged


async def test_the_openapi_document_describes_the_routes_and_their_errors(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    login = doc["paths"]["/api/auth/login"]["post"]
    assert {"200", "401", "422", "429"} <= set(login["responses"])
    assert "requestBody" in login
    assert "409" in doc["paths"]["/api/auth/signup"]["post"]["responses"]
    assert "404" in doc["paths"]["/api/auth/sessions/{session_id}"]["delete"]["responses"]
    assert {"403", "409"} <= set(doc["paths"]["/api/users/me"]["patch"]["responses"])


async def test_the_documented_patterns_refuse_what_the_service_refuses(client: httpx.AsyncClient) -> None:
    """A pattern means the same to the service (Python's re.search) as to the document's readers."""
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    for body in ("SignupBody", "UpdateMeBody"):
        email, name = (schemas[body]["properties"][f]["pattern"] for f in ("email", "name"))
        assert re.search(email, "a.b@example.com")
        assert not re.search(email, "a.b@example.com\n")
        assert re.search(name, "Ada\nLovelace")
        assert not re.search(name, "Ada\x00")
    assert not re.search(schemas["LoginBody"]["properties"]["email"]["pattern"], "a\x00@example.com")
    assert "pattern" not in schemas["LoginBody"]["properties"]["password"]
