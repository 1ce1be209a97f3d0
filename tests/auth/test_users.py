"""/api/users/me (read, update, delete), the password change, and /internal/users/existing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.auth.tables import Outbox, Session, User
from shared.events import decode_event
from shared.session_cache import cache_key
from shared.tokens import session_id_of
from tests.auth.support import PASSWORD, Account, Api

ME = "/api/users/me"


async def outbox_events_for(user_id: str) -> list[Any]:
    rows = await Outbox.select(Outbox.event_type, Outbox.payload).run()
    events = [(row["event_type"], decode_event(row["payload"])) for row in rows]
    return [(kind, event) for kind, event in events if event.user_id == user_id]


async def test_me_returns_the_user(api: Api, account: Account) -> None:
    resp = await api.call("GET", ME, session=account)
    assert resp.status_code == 200
    assert resp.json() == account.user


async def test_update_name(api: Api, account: Account) -> None:
    resp = await api.call("PATCH", ME, session=account, json={"name": "Grace"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["name"] == "Grace"
    assert body["createdAt"] == account.user["createdAt"]
    assert body["updatedAt"] > account.user["updatedAt"]
    assert (await api.call("GET", ME, session=account)).json() == body


async def test_empty_update_changes_nothing(api: Api, account: Account) -> None:
    resp = await api.call("PATCH", ME, session=account, json={})
    assert resp.status_code == 200
    assert resp.json() == account.user


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": "n" * 101}, "name"),
        ({"name": 3}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"email": None}, "email"),
        ({"email": "nope"}, "email"),
        ({"email": "new@example.com\n", "currentPassword": PASSWORD}, "email"),
        ({"email": "new\x00@example.com", "currentPassword": PASSWORD}, "email"),
        ({"email": "a" * 243 + "@example.com"}, "email"),
        ({"currentPassword": None}, "currentPassword"),
        ({"currentPassword": "p" * 257}, "currentPassword"),
        ({"id": str(uuid.uuid4())}, "id"),
        ({"createdAt": "2020-01-01T00:00:00.000000Z"}, "createdAt"),
        ({"updatedAt": "2020-01-01T00:00:00.000000Z"}, "updatedAt"),
        ({"password": PASSWORD}, "password"),
    ],
)
async def test_update_rejects_invalid_bodies(
    api: Api, account: Account, body: dict[str, Any], field: str
) -> None:
    resp = await api.call("PATCH", ME, session=account, json=body)
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == [field]
    assert (await api.call("GET", ME, session=account)).json() == account.user


async def test_changing_the_email_needs_the_current_password(api: Api, account: Account) -> None:
    new = "NEW-" + account.email
    for extra in ({}, {"currentPassword": "wrong password"}):
        resp = await api.call("PATCH", ME, session=account, json={"email": new, **extra})
        assert resp.status_code == 403
        assert resp.json()["status"] == 403
    resp = await api.call("PATCH", ME, session=account, json={"email": new, "currentPassword": PASSWORD})
    assert resp.status_code == 200
    assert resp.json()["email"] == new.lower()
    account.email = new.lower()
    assert (await api.login(account)).status_code == 200


async def test_the_same_email_in_another_case_is_no_change(api: Api, account: Account) -> None:
    resp = await api.call("PATCH", ME, session=account, json={"email": account.email.upper()})
    assert resp.status_code == 200
    assert resp.json() == account.user


async def test_changing_to_a_taken_email_is_409(api: Api, account: Account, unique_email: str) -> None:
    other = await api.signup("taken-" + unique_email)
    body = {"email": other.email.upper(), "currentPassword": PASSWORD}
    resp = await api.call("PATCH", ME, session=account, json=body)
    assert resp.status_code == 409
    assert (await api.call("GET", ME, session=account)).json()["email"] == account.email


async def test_password_change_revokes_the_other_sessions(
    api: Api, account: Account, redis: aioredis.Redis
) -> None:
    other = await api.new_session(account)
    for token in (account.token, other):
        await redis.set(cache_key(session_id_of(token)), b"{}", ex=60)
    body = {"currentPassword": PASSWORD, "newPassword": "a brand new password"}
    resp = await api.call("POST", f"{ME}/password", session=account, json=body)
    assert resp.status_code == 204
    assert (await api.validate(session_id_of(other))).status_code == 404
    assert not await redis.exists(cache_key(session_id_of(other)))
    assert (await api.validate(account.sid)).status_code == 200
    assert await redis.exists(cache_key(account.sid))
    assert (await api.login(account)).status_code == 401
    account.password = "a brand new password"
    assert (await api.login(account)).status_code == 200


async def test_password_change_with_a_wrong_current_password_is_403(api: Api, account: Account) -> None:
    body = {"currentPassword": "not my password", "newPassword": "a brand new password"}
    resp = await api.call("POST", f"{ME}/password", session=account, json=body)
    assert resp.status_code == 403
    assert (await api.login(account)).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currentPassword": PASSWORD}, "newPassword"),
        ({"newPassword": "long enough"}, "currentPassword"),
        ({"currentPassword": PASSWORD, "newPassword": "short"}, "newPassword"),
        ({"currentPassword": PASSWORD, "newPassword": "p" * 257}, "newPassword"),
        ({"currentPassword": PASSWORD, "newPassword": None}, "newPassword"),
        ({"currentPassword": PASSWORD, "newPassword": "long enough", "x": 1}, "x"),
    ],
)
async def test_password_change_rejects_invalid_bodies(
    api: Api, account: Account, body: dict[str, Any], field: str
) -> None:
    resp = await api.call("POST", f"{ME}/password", session=account, json=body)
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == [field]


async def test_delete_needs_the_password(api: Api, account: Account) -> None:
    resp = await api.call("DELETE", ME, session=account, json={"password": "wrong password"})
    assert resp.status_code == 403
    resp = await api.call("DELETE", ME, session=account, json={})
    assert resp.status_code == 422
    resp = await api.call("DELETE", ME, session=account, json={"password": None})
    assert resp.status_code == 422
    assert (await api.call("GET", ME, session=account)).status_code == 200
    assert await outbox_events_for(account.uid) == []


async def test_delete_removes_user_sessions_and_cache_and_records_one_event(
    api: Api, account: Account, redis: aioredis.Redis
) -> None:
    other = await api.new_session(account)
    for token in (account.token, other):
        await redis.set(cache_key(session_id_of(token)), b"{}", ex=60)
    resp = await api.call("DELETE", ME, session=account, json={"password": PASSWORD})
    assert resp.status_code == 204
    assert resp.headers["x-session-ended"] == "1"
    assert await User.count().where(User.id == account.uid).run() == 0
    assert await Session.count().where(Session.user_id == account.uid).run() == 0
    assert [await redis.exists(cache_key(session_id_of(t))) for t in (account.token, other)] == [0, 0]
    events = await outbox_events_for(account.uid)
    assert len(events) == 1
    kind, event = events[0]
    assert kind == "user.deleted"
    assert uuid.UUID(event.event_id)
    assert (await api.call("GET", ME, session=account)).status_code == 401
    assert (await api.login(account)).status_code == 401
    again = await api.call("DELETE", ME, session=account, json={"password": PASSWORD})
    assert again.status_code == 401
    assert len(await outbox_events_for(account.uid)) == 1


async def test_existing_users(api: Api, account: Account) -> None:
    gone = str(uuid.uuid4())
    resp = await api.call("POST", "/internal/users/existing", json={"userIds": [account.uid, gone]})
    assert resp.status_code == 200
    assert resp.json() == {"existing": [account.uid]}


@pytest.mark.parametrize(
    "body",
    [
        {"userIds": []},
        {"userIds": [str(uuid.uuid4()) for _ in range(1001)]},
        {"userIds": ["not-a-uuid"]},
        {"userIds": None},
        {},
    ],
)
async def test_existing_users_rejects_invalid_bodies(api: Api, body: dict[str, Any]) -> None:
    resp = await api.call("POST", "/internal/users/existing", json=body)
    assert resp.status_code == 422


async def test_existing_users_accepts_a_thousand_ids(api: Api, account: Account) -> None:
    ids = [account.uid] + [str(uuid.uuid4()) for _ in range(999)]
    resp = await api.call("POST", "/internal/users/existing", json={"userIds": ids})
    assert resp.json() == {"existing": [account.uid]}


async def test_concurrent_deletions_record_one_event(api: Api, account: Account) -> None:
    first, second = await asyncio.gather(
        *(api.call("DELETE", ME, session=account, json={"password": PASSWORD}) for _ in range(2))
    )
    assert sorted([first.status_code, second.status_code]) == [204, 401]
    assert len(await outbox_events_for(account.uid)) == 1
