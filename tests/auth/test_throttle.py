"""Login throttling: per account and per client address, 429 with Retry-After, cleared by success."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from redis.asyncio import Redis

from services.auth.throttle import CURRENT_PASSWORD, LoginThrottle
from tests.auth.support import PASSWORD, Account, Api

LOGIN = "/api/auth/login"


async def fail(api: Api, email: str, times: int) -> None:
    for _ in range(times):
        resp = await api.call("POST", LOGIN, json={"email": email, "password": "wrong password"})
        assert resp.status_code == 401


def retry_after(resp: httpx.Response) -> int:
    assert resp.status_code == 429, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    return int(resp.headers["retry-after"])


async def test_ten_failures_lock_the_account_even_for_the_right_password(api: Api, account: Account) -> None:
    await fail(api, account.email.upper(), 10)
    assert 0 < retry_after(await api.login(account)) <= 15 * 60
    elsewhere = Api(api.client)  # another client address: the account itself is locked
    assert retry_after(await elsewhere.login(account)) > 0


async def test_unknown_emails_are_throttled_too(api: Api, unique_email: str) -> None:
    await fail(api, unique_email, 10)
    resp = await api.call("POST", LOGIN, json={"email": unique_email, "password": PASSWORD})
    assert retry_after(resp) > 0


async def test_a_success_clears_the_account_count(api: Api, account: Account) -> None:
    await fail(api, account.email, 9)
    assert (await api.login(account)).status_code == 200
    await fail(api, account.email, 1)  # would be the 10th failure without the reset
    assert (await api.login(account)).status_code == 200


@pytest.mark.parametrize("settings_changes", [{"throttle_window": timedelta(hours=1)}])
async def test_the_lock_lifts_when_the_window_ends(api: Api, account: Account, redis: Redis) -> None:
    await fail(api, account.email, 10)
    assert 15 * 60 < retry_after(await api.login(account)) <= 60 * 60  # the configured window
    # The window is the failure count's lifetime in Redis: end it now (ten hashes under load could
    # outlast a window short enough to wait for).
    await redis.delete(LoginThrottle._keys(account.email, api.ip or "")[0])
    assert (await api.login(account)).status_code == 200


# The per-client cap on password work in flight (test_password_work.py) would refuse most of the
# burst before the per-account cap is reached; lifted here to test the account's own cap.
@pytest.mark.parametrize("settings_changes", [{"client_password_in_flight": 1000}])
async def test_a_burst_of_concurrent_attempts_gets_few_hash_checks(api: Api, account: Account) -> None:
    wrong = {"email": account.email, "password": "wrong password"}
    answers = await asyncio.gather(*(api.call("POST", LOGIN, json=wrong) for _ in range(40)))
    statuses = [resp.status_code for resp in answers]
    assert set(statuses) == {401, 429}
    # at most limit + in-flight cap - 1 attempts reach the hash check in a window
    assert statuses.count(401) <= 19, statuses.count(401)
    assert retry_after(await api.login(account)) > 0


@pytest.mark.parametrize("settings_changes", [{"throttle_client_limit": 3}])
async def test_failures_from_one_client_lock_that_client(
    api: Api, account: Account, unique_email: str
) -> None:
    for n in range(3):
        await fail(api, f"{n}-{unique_email}", 1)
    assert retry_after(await api.login(account)) > 0
    assert (await Api(api.client).login(account)).status_code == 200


@pytest.mark.parametrize("settings_changes", [{"throttle_client_limit": 3}])
async def test_without_a_gateway_address_the_peer_address_counts(
    app: Litestar, account: Account, unique_email: str
) -> None:
    transport = httpx.ASGITransport(app=app, client=("192.0.2.44", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as peer:
        direct = Api(peer)
        direct.ip = None
        for n in range(3):
            await fail(direct, f"{n}-{unique_email}", 1)
        assert retry_after(await direct.login(account)) > 0
        via_gateway = Api(peer)  # same peer, but the credential names a client address
        assert (await via_gateway.login(account)).status_code == 200


# The routes that ask a signed-in user for the current password: throttled like logins, on counts
# of their own.
ME = "/api/users/me"


async def check_current_password(
    api: Api, account: Account, route: str, password: str, **kwargs: Any
) -> httpx.Response:
    if route == "email":
        body = {"email": "changed-" + account.email, "currentPassword": password}
        return await api.call("PATCH", ME, session=account, json=body, **kwargs)
    if route == "password":
        body = {"currentPassword": password, "newPassword": "a new password"}
        return await api.call("POST", f"{ME}/password", session=account, json=body, **kwargs)
    return await api.call("DELETE", ME, session=account, json={"password": password}, **kwargs)


ROUTES = pytest.mark.parametrize("route", ["email", "password", "delete"])
ACCEPTED = {"email": 200, "password": 204, "delete": 204}


async def guess(api: Api, account: Account, route: str, times: int) -> None:
    for _ in range(times):
        resp = await check_current_password(api, account, route, "wrong password")
        assert resp.status_code == 403, resp.text


@ROUTES
async def test_ten_wrong_current_passwords_lock_the_account(api: Api, account: Account, route: str) -> None:
    await guess(api, account, route, 10)
    assert 0 < retry_after(await check_current_password(api, account, route, "wrong password")) <= 15 * 60
    # right password included, from another client too; logging in is not locked by these guesses
    assert retry_after(await check_current_password(api, account, route, PASSWORD)) > 0
    elsewhere = Api(api.client)
    assert retry_after(await check_current_password(elsewhere, account, route, PASSWORD)) > 0
    assert (await api.call("GET", ME, session=account)).json() == account.user  # nothing changed
    assert (await elsewhere.login(account)).status_code == 200


@ROUTES
async def test_the_right_current_password_works_within_the_limit_and_clears_the_count(
    api: Api, account: Account, route: str, redis: Redis
) -> None:
    await guess(api, account, route, 9)
    key = LoginThrottle._keys(account.email, api.ip or "", CURRENT_PASSWORD)[0]
    assert await redis.get(key) == b"9"
    resp = await check_current_password(api, account, route, PASSWORD)
    assert resp.status_code == ACCEPTED[route], resp.text
    assert not await redis.exists(key)


@ROUTES
async def test_a_locked_login_leaves_the_current_password_routes_as_api_md_says(
    api: Api, account: Account, route: str
) -> None:
    await fail(api, account.email, 10)
    assert retry_after(await api.login(account)) > 0
    assert (await check_current_password(api, account, route, "wrong password")).status_code == 403
    resp = await check_current_password(api, account, route, PASSWORD)
    assert resp.status_code == ACCEPTED[route], resp.text


async def test_a_patch_that_checks_no_password_is_not_throttled(api: Api, account: Account) -> None:
    await guess(api, account, "email", 10)
    assert (await api.call("PATCH", ME, session=account, json={"name": "Ada"})).status_code == 200
    missing = await api.call("PATCH", ME, session=account, json={"email": "new-" + account.email})
    assert missing.status_code == 403


async def test_a_burst_of_wrong_current_passwords_gets_few_hash_checks(api: Api, account: Account) -> None:
    answers = await asyncio.gather(
        *(check_current_password(api, account, "delete", "wrong password") for _ in range(40))
    )
    statuses = [resp.status_code for resp in answers]
    assert set(statuses) == {403, 429}
    assert statuses.count(403) <= 19, statuses.count(403)


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, "X-Real-Ip": address, "Forwarded": f"for={address}"}


@pytest.mark.parametrize("settings_changes", [{"throttle_client_limit": 3}])
async def test_wrong_current_passwords_lock_the_client_whatever_it_forwards(
    api: Api, unique_email: str
) -> None:
    """The client is the address the gateway signed into the credential: forwarding headers sent
    along change nothing, so rotating them does not escape the client limit."""
    *victims, last = [await api.signup(f"{n}-{unique_email}") for n in range(4)]
    for n, (victim, route) in enumerate(zip(victims, ["email", "password", "delete"], strict=True)):
        resp = await check_current_password(
            api, victim, route, "wrong password", headers=forwarded(f"198.51.100.{n}")
        )
        assert resp.status_code == 403
    resp = await check_current_password(api, last, "delete", PASSWORD, headers=forwarded("203.0.113.9"))
    assert retry_after(resp) > 0
    assert (
        await Api(api.client).call("DELETE", ME, session=last, json={"password": PASSWORD})
    ).status_code == 204
    assert (await api.login(victims[0])).status_code == 200  # logins from the locked client go on
