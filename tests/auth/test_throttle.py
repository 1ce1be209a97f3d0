"""Login throttling: per account and per client address, 429 with Retry-After, cleared by success."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar
from redis.asyncio import Redis

from services.auth.throttle import LoginThrottle
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
