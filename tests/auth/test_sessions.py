"""Sessions: logout, list, revoke one / all others, validation with sliding and absolute expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar import Litestar

from services.auth.tables import Session
from shared.internal_auth import CLIENT_USER_AGENT
from shared.session_cache import cache_key
from shared.timeutil import rfc3339
from shared.tokens import session_id_of
from tests.auth.support import PASSWORD, Account, Api, Clock, parse_time


async def cache(redis: aioredis.Redis, *tokens: str) -> None:
    """Put the sessions in the gateway's cache, as the gateway would."""
    for token in tokens:
        await redis.set(cache_key(session_id_of(token)), b'{"userId":"x","expiresAt":"x"}', ex=60)


async def cached(redis: aioredis.Redis, token: str) -> bool:
    return bool(await redis.exists(cache_key(session_id_of(token))))


async def test_logout_ends_the_session_everywhere(api: Api, account: Account, redis: aioredis.Redis) -> None:
    await cache(redis, account.token)
    resp = await api.call("POST", "/api/auth/logout", session=account)
    assert resp.status_code == 204
    assert resp.headers["x-session-ended"] == "1"
    assert resp.content == b""
    assert not await cached(redis, account.token)
    assert (await api.validate(account.sid)).status_code == 404
    assert await Session.count().where(Session.id == account.sid).run() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/auth/logout"),
        ("GET", "/api/auth/sessions"),
        ("DELETE", "/api/auth/sessions"),
        ("DELETE", f"/api/auth/sessions/{'a' * 64}"),
        ("GET", "/api/users/me"),
        ("PATCH", "/api/users/me"),
        ("DELETE", "/api/users/me"),
        ("POST", "/api/users/me/password"),
    ],
)
async def test_session_routes_need_a_user_in_the_credential(api: Api, method: str, path: str) -> None:
    # Anonymous (uid None) credential, and a body that would be invalid: the 401 comes first.
    resp = await api.call(method, path, json={"bogus": True})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["status"] == 401


async def test_sessions_are_listed_newest_first(clock: Clock, api: Api, account: Account) -> None:
    clock.advance(minutes=1)
    second = await api.new_session(account)
    clock.advance(minutes=1)
    third = await api.new_session(account)
    resp = await api.call("GET", "/api/auth/sessions", token=second, session=account)
    assert resp.status_code == 200
    items = resp.json()["items"]
    assert [i["id"] for i in items] == [session_id_of(third), session_id_of(second), account.sid]
    assert [i["current"] for i in items] == [False, True, False]
    assert set(items[0]) == {"id", "expiresAt", "createdAt", "current", "userAgent", "ip"}
    assert items[0]["createdAt"] == rfc3339(clock.now)
    assert items[0]["expiresAt"] == rfc3339(clock.now + timedelta(days=30))
    assert all(third not in str(item) for item in items)


async def test_sessions_show_the_device_that_started_them(api: Api, account: Account) -> None:
    agent = "Mozilla/5.0 " + "x" * 300
    resp = await api.login(account, headers={CLIENT_USER_AGENT: agent})
    assert resp.status_code == 200
    token = resp.json()["token"]
    items = (await api.call("GET", "/api/auth/sessions", token=token, session=account)).json()["items"]
    by_id = {item["id"]: item for item in items}
    assert by_id[session_id_of(token)]["userAgent"] == agent[:256]
    assert by_id[session_id_of(token)]["ip"] == api.ip
    # The signup sent no client User-Agent: unknown is null, not the caller's own agent.
    assert by_id[account.sid]["userAgent"] is None
    assert by_id[account.sid]["ip"] == api.ip


async def test_expired_sessions_are_not_listed(clock: Clock, api: Api, account: Account) -> None:
    clock.advance(days=29)
    fresh = await api.new_session(account)
    clock.advance(days=2)  # the signup's session is 31 days old now
    items = (await api.call("GET", "/api/auth/sessions", token=fresh, session=account)).json()["items"]
    assert [i["id"] for i in items] == [session_id_of(fresh)]


async def test_revoking_another_session(api: Api, account: Account, redis: aioredis.Redis) -> None:
    other = await api.new_session(account)
    await cache(redis, account.token, other)
    resp = await api.call("DELETE", f"/api/auth/sessions/{session_id_of(other)}", session=account)
    assert resp.status_code == 204
    assert "x-session-ended" not in resp.headers
    assert not await cached(redis, other)
    assert await cached(redis, account.token)
    assert (await api.validate(session_id_of(other))).status_code == 404
    assert (await api.validate(account.sid)).status_code == 200


async def test_revoking_the_current_session_is_a_logout(
    api: Api, account: Account, redis: aioredis.Redis
) -> None:
    await cache(redis, account.token)
    resp = await api.call("DELETE", f"/api/auth/sessions/{account.sid}", session=account)
    assert resp.status_code == 204
    assert resp.headers["x-session-ended"] == "1"
    assert not await cached(redis, account.token)
    assert (await api.validate(account.sid)).status_code == 404


@pytest.mark.parametrize("session_id", ["f" * 64, "nothex", "A" * 64, "a" * 63, "a" * 65])
async def test_revoking_an_unknown_or_malformed_session_is_404(
    api: Api, account: Account, session_id: str
) -> None:
    resp = await api.call("DELETE", f"/api/auth/sessions/{session_id}", session=account)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"


async def test_revoking_someone_elses_session_is_404(api: Api, account: Account, unique_email: str) -> None:
    stranger = await api.signup("other-" + unique_email)
    resp = await api.call("DELETE", f"/api/auth/sessions/{stranger.sid}", session=account)
    assert resp.status_code == 404
    assert (await api.validate(stranger.sid)).status_code == 200


async def test_revoking_all_other_sessions(api: Api, account: Account, redis: aioredis.Redis) -> None:
    others = [await api.new_session(account) for _ in range(2)]
    await cache(redis, account.token, *others)
    resp = await api.call("DELETE", "/api/auth/sessions", session=account)
    assert resp.status_code == 204
    assert "x-session-ended" not in resp.headers
    assert [await cached(redis, t) for t in others] == [False, False]
    assert await cached(redis, account.token)
    items = (await api.call("GET", "/api/auth/sessions", session=account)).json()["items"]
    assert [i["id"] for i in items] == [account.sid]


async def test_validate_returns_the_session(api: Api, account: Account) -> None:
    resp = await api.validate(account.sid)
    assert resp.status_code == 200
    assert resp.json() == {
        "userId": account.uid,
        "sessionId": account.sid,
        "expiresAt": account.expires_at,
        "renewed": False,
    }


async def test_validate_slides_the_expiry_when_under_15_days_remain(
    clock: Clock, api: Api, account: Account
) -> None:
    clock.advance(days=15, seconds=-1)  # 15 days and 1 second left: not yet
    assert (await api.validate(account.sid)).json()["renewed"] is False
    now = clock.advance(seconds=2)
    body = (await api.validate(account.sid)).json()
    assert body["renewed"] is True
    assert body["expiresAt"] == rfc3339(now + timedelta(days=30))
    assert (await api.validate(account.sid)).json()["renewed"] is False
    row = await Session.select(Session.expires_at).where(Session.id == account.sid).first().run()
    assert row["expires_at"] == now + timedelta(days=30)


async def test_sliding_stops_at_the_absolute_lifetime(clock: Clock, api: Api, account: Account) -> None:
    created = clock.now
    renewals = []
    for _ in range(4):  # a request every 20 days slides the expiry, but never past created + 90 days
        clock.advance(days=20)
        body = (await api.validate(account.sid)).json()
        renewals.append(body["renewed"])
    assert renewals == [True, True, True, False]
    assert body["expiresAt"] == rfc3339(created + timedelta(days=90))
    clock.advance(days=10)
    assert (await api.validate(account.sid)).status_code == 404
    assert await Session.count().where(Session.id == account.sid).run() == 0


async def test_an_expired_session_is_refused_and_deleted(clock: Clock, api: Api, account: Account) -> None:
    clock.now = parse_time(account.expires_at)
    resp = await api.validate(account.sid)
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/problem+json"
    assert await Session.count().where(Session.id == account.sid).run() == 0


@pytest.mark.parametrize("session_id", ["", "x", "g" * 64, "F" * 64, "0" * 64])
async def test_validate_unknown_or_malformed_is_404(api: Api, session_id: str) -> None:
    assert (await api.validate(session_id)).status_code == 404


@pytest.mark.parametrize("body", [{}, {"sessionId": None}, {"sessionId": 5}, {"sessionId": "a", "x": 1}])
async def test_validate_rejects_malformed_bodies(api: Api, body: dict[str, object]) -> None:
    resp = await api.call("POST", "/internal/sessions/validate", json=body)
    assert resp.status_code == 422


async def test_purge_deletes_only_expired_sessions(
    clock: Clock, app: Litestar, api: Api, account: Account
) -> None:
    clock.advance(days=20)
    fresh = await api.new_session(account)
    clock.advance(days=11)
    assert await app.state.container.sessions.purge_expired() >= 1
    remaining = await Session.select(Session.id).where(Session.user_id == account.uid).run()
    assert [row["id"] for row in remaining] == [session_id_of(fresh)]


async def test_every_login_gets_a_distinct_token(api: Api, account: Account) -> None:
    tokens = {await api.new_session(account) for _ in range(3)} | {account.token}
    assert len(tokens) == 4


@pytest.mark.parametrize(
    ("call", "revoked"),
    [
        (("POST", "/api/auth/logout", None), "own"),
        (("DELETE", "/api/auth/sessions", None), "other"),
        (
            ("POST", "/api/users/me/password", {"currentPassword": PASSWORD, "newPassword": "a new one!"}),
            "other",
        ),
        (("DELETE", "/api/users/me", {"password": PASSWORD}), "both"),
    ],
)
async def test_a_revocation_that_cannot_purge_the_cache_fails_closed_and_changes_nothing(
    api: Api,
    account: Account,
    *,
    redis: aioredis.Redis,
    app: Litestar,
    call: tuple[str, str, Any],
    revoked: str,
) -> None:
    """Redis down: 503 + Retry-After, and every session (this one and the other) is still there, so a
    cache entry that comes back with Redis's append-only file cannot outlive a revocation answered 2xx."""
    method, path, body = call
    other = await api.new_session(account)
    await cache(redis, account.token, other)
    sessions = app.state.container.sessions
    saved, sessions.redis = sessions.redis, aioredis.Redis.from_url("redis://127.0.0.1:9")
    try:
        resp = await api.call(method, path, session=account, json=body)
    finally:
        await sessions.redis.aclose()
        sessions.redis = saved
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) > 0
    assert (await api.validate(account.sid)).status_code == 200
    assert (await api.validate(session_id_of(other))).status_code == 200
    # Redis is back: the same request goes through and purges the entries.
    resp = await api.call(method, path, session=account, json=body)
    assert resp.status_code == 204, resp.text
    assert await cached(redis, account.token) == (revoked == "other")
    assert await cached(redis, other) == (revoked == "own")
