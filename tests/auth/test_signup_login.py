"""POST /api/auth/signup and /api/auth/login: bodies, validation, identical failures, hashing."""

from __future__ import annotations

import asyncio
import base64
import re
from typing import Any

import pytest
from argon2 import PasswordHasher

from services.auth.tables import Session, User
from shared.tokens import session_id_of
from tests.auth.support import PASSWORD, Account, Api, parse_time

SIGNUP = "/api/auth/signup"
LOGIN = "/api/auth/login"
TOKEN = re.compile(r"[a-z2-7]{32}")


def assert_auth_body(body: dict[str, Any], email: str) -> None:
    assert set(body) == {"user", "token", "expiresAt"}
    assert set(body["user"]) == {"id", "email", "name", "emailVerified", "createdAt", "updatedAt"}
    assert body["user"]["emailVerified"] is False
    assert body["user"]["email"] == email
    assert TOKEN.fullmatch(body["token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", body["expiresAt"])
    lifetime = parse_time(body["expiresAt"]) - parse_time(body["user"]["createdAt"])
    assert lifetime.days == 30


async def test_signup_creates_user_and_session(api: Api, unique_email: str) -> None:
    resp = await api.call("POST", SIGNUP, json={"email": unique_email.upper(), "password": PASSWORD})
    assert resp.status_code == 201
    body = resp.json()
    assert_auth_body(body, unique_email)
    assert body["user"]["name"] is None
    assert body["user"]["createdAt"] == body["user"]["updatedAt"]
    validated = await api.validate(session_id_of(body["token"]))
    assert validated.json()["userId"] == body["user"]["id"]


async def test_signup_keeps_the_name(api: Api, unique_email: str) -> None:
    account = await api.signup(unique_email, name="Ada Lovelace")
    assert account.user["name"] == "Ada Lovelace"


@pytest.mark.parametrize("case", [str.upper, str.title, lambda e: e])
async def test_signup_with_a_taken_email_in_any_case_is_409(api: Api, account: Account, case: Any) -> None:
    resp = await api.call("POST", SIGNUP, json={"email": case(account.email), "password": PASSWORD})
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["status"] == 409


LONG_EMAIL = "a" * (254 - len("@example.com")) + "@example.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@", "password": PASSWORD}, "email"),
        ({"email": "@example.com", "password": PASSWORD}, "email"),
        ({"email": "a b@example.com", "password": PASSWORD}, "email"),
        ({"email": " a@example.com", "password": PASSWORD}, "email"),
        ({"email": "a@example.com\n", "password": PASSWORD}, "email"),
        ({"email": "a\x00@example.com", "password": PASSWORD}, "email"),
        ({"email": "x" + LONG_EMAIL, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "1234567"}, "password"),
        ({"email": "a@example.com", "password": "p" * 257}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "n" * 101}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "\x00"}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "name": "Ada\x00Lovelace"}, "name"),
        ({"email": None, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": None}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": None}, "name"),
        ({"email": 42, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": ["p" * 8]}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "name": 7}, "name"),
        ({"email": "a@example.com", "password": PASSWORD, "isAdmin": True}, "isAdmin"),
        ({"email": "a@example.com", "password": PASSWORD, "id": "x"}, "id"),
        ({"email": "a@example.com", "password": PASSWORD, "createdAt": "x"}, "createdAt"),
    ],
)
async def test_signup_rejects_invalid_bodies_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    resp = await api.call("POST", SIGNUP, json=body)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["status"] == 422
    assert field in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [field]


@pytest.mark.parametrize("path", [SIGNUP, LOGIN])
async def test_non_json_body_is_400_and_non_object_is_422(api: Api, path: str) -> None:
    headers = {"content-type": "application/json"}
    resp = await api.call("POST", path, content=b"{not json", headers=headers)
    assert resp.status_code == 400
    assert resp.headers["content-type"] == "application/problem+json"
    resp = await api.call("POST", path, content=b'["a@example.com"]', headers=headers)
    assert resp.status_code == 422


@pytest.mark.parametrize("path", [SIGNUP, LOGIN])
async def test_oversized_body_is_413(api: Api, path: str) -> None:
    body = b'{"email": "a@example.com", "password": "' + b"p" * (2 * 1024 * 1024) + b'"}'
    resp = await api.call("POST", path, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413


async def test_signup_accepts_the_boundary_lengths_and_keeps_the_password_whole(
    api: Api, unique_email: str
) -> None:
    email = unique_email.split("@", maxsplit=1)[0].rjust(254 - len("@example.com"), "a") + "@example.com"
    password = " Ünïcode ✓ " + "p" * 245
    assert (len(email), len(password)) == (254, 256)
    account = await api.signup(email, password, name="n" * 100)
    assert account.user["email"] == email
    assert (await api.login(account)).status_code == 200
    truncated = Account(email, password[:-1], account.user, "", "")
    assert (await api.login(truncated)).status_code == 401
    stripped = Account(email, password.strip(), account.user, "", "")
    assert (await api.login(stripped)).status_code == 401


async def test_a_password_is_kept_whole_around_a_nul_character(api: Api, unique_email: str) -> None:
    """Passwords are only hashed, never stored: U+0000 is kept like any other character."""
    account = await api.signup(unique_email, "before\x00after", name="two\nlines")
    assert account.user["name"] == "two\nlines"
    assert (await api.login(account)).status_code == 200
    for cut in ("before", "before\x00", "before\x00afte"):
        assert (await api.login(Account(unique_email, cut, account.user, "", ""))).status_code == 401


async def test_signup_accepts_an_eight_character_password(api: Api, unique_email: str) -> None:
    account = await api.signup(unique_email, "12345678")
    assert account.user["email"] == unique_email


async def test_login_returns_a_new_session(api: Api, account: Account) -> None:
    resp = await api.call("POST", LOGIN, json={"email": account.email.upper(), "password": PASSWORD})
    assert resp.status_code == 200
    body = resp.json()
    assert_auth_body(body, account.email)
    assert body["user"] == account.user
    assert body["token"] != account.token
    assert (await api.validate(session_id_of(body["token"]))).status_code == 200


async def test_unknown_email_and_wrong_password_fail_identically(
    api: Api, account: Account, unique_email: str
) -> None:
    wrong = await api.call("POST", LOGIN, json={"email": account.email, "password": "wrong password"})
    unknown = await api.call("POST", LOGIN, json={"email": "x" + unique_email, "password": PASSWORD})
    short = await api.call("POST", LOGIN, json={"email": account.email, "password": "short"})
    assert wrong.status_code == unknown.status_code == short.status_code == 401
    assert wrong.content == unknown.content == short.content
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"
    assert wrong.headers["content-type"] == unknown.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
        ({"email": 1, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"email": None, "password": PASSWORD}, "email"),
        ({"email": "a" * 255, "password": PASSWORD}, "email"),
        ({"email": "a\x00@example.com", "password": PASSWORD}, "email"),
        ({"email": "\x00", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "p" * 257}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "remember": True}, "remember"),
    ],
)
async def test_login_rejects_malformed_bodies(api: Api, body: dict[str, Any], field: str) -> None:
    resp = await api.call("POST", LOGIN, json=body)
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == [field]


async def test_the_token_is_never_stored(api: Api, account: Account) -> None:
    rows = await Session.select().where(Session.user_id == account.uid).run()
    assert [row["id"] for row in rows] == [session_id_of(account.token)]
    assert account.token not in str(rows)
    user = await User.select().where(User.id == account.uid).first().run()
    assert PASSWORD not in str(user)
    assert user["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_login_rehashes_a_hash_made_with_other_parameters(api: Api, account: Account) -> None:
    old = PasswordHasher(time_cost=3, memory_cost=19456, parallelism=1).hash(PASSWORD)
    await User.update({User.password_hash: old}).where(User.id == account.uid).run()
    assert (await api.login(account)).status_code == 200
    user = await User.select().where(User.id == account.uid).first().run()
    assert user["password_hash"] != old
    assert user["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await api.login(account)).status_code == 200


def test_tokens_are_160_random_bits_in_lowercase_base32() -> None:
    from services.auth.sessions import new_token

    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    for token in tokens:
        assert TOKEN.fullmatch(token)
        assert len(base64.b32decode(token.upper())) == 20


async def test_concurrent_signups_for_one_email_create_one_account(api: Api, unique_email: str) -> None:
    body = {"email": unique_email, "password": PASSWORD}
    first, second = await asyncio.gather(
        api.call("POST", SIGNUP, json=body),
        api.call("POST", SIGNUP, json={**body, "email": unique_email.upper()}),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    assert await User.count().where(User.email == unique_email).run() == 1
