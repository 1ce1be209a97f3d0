"""Password work is bounded per client: failures reserved before hashing (no overrun by concurrency),
a cap on password work in flight, signups counted per client; 429 + Retry-After, others unaffected."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from pathlib import Path

import pytest
from litestar import Litestar
from redis.asyncio import Redis

from services.auth import passwords
from services.auth.throttle import LoginThrottle
from tests.auth.support import PASSWORD, Account, Api, auth_settings

LOGIN = "/api/auth/login"
SIGNUP = "/api/auth/signup"


def email() -> str:
    return f"work-{secrets.token_hex(6)}@example.com"


@pytest.mark.parametrize(
    "settings_changes", [{"throttle_client_limit": 20, "client_password_in_flight": 1000}]
)
async def test_concurrent_logins_cannot_overrun_the_client_failure_limit(api: Api, redis: Redis) -> None:
    answers = await asyncio.gather(
        *(api.call("POST", LOGIN, json={"email": email(), "password": "wrong password"}) for _ in range(300))
    )
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429, 503}, set(statuses)
    assert statuses.count(401) <= 20, statuses.count(401)
    failures = int(await redis.get(LoginThrottle._keys("x", api.ip or "")[2]) or 0)
    assert failures <= 20, failures
    for answer in answers:
        if answer.status_code != 401:
            assert int(answer.headers["retry-after"]) >= 1
    # Every admitted attempt was settled: nothing is left in flight for this client.
    assert int(await redis.get(LoginThrottle._keys("x", api.ip or "")[3]) or 0) == 0


@pytest.mark.parametrize("settings_changes", [{"client_password_in_flight": 3}])
async def test_a_client_with_its_password_work_in_flight_gets_429_others_do_not(
    api: Api, account: Account, redis: Redis
) -> None:
    busy_key = LoginThrottle._keys("x", api.ip or "")[3]
    await redis.set(busy_key, 3, px=60_000)  # three checks of this client in flight (e.g. other processes)
    try:
        hashes = passwords.HASHES._value.get()
        for resp in (
            await api.login(account),
            await api.call("POST", SIGNUP, json={"email": email(), "password": PASSWORD}),
            await api.call(
                "POST",
                "/api/users/me/password",
                session=account,
                json={"currentPassword": PASSWORD, "newPassword": PASSWORD + "!"},
            ),
            await api.call("DELETE", "/api/users/me", session=account, json={"password": PASSWORD}),
        ):
            assert resp.status_code == 429, resp.text
            assert resp.headers["content-type"] == "application/problem+json"
            assert int(resp.headers["retry-after"]) == 1
            assert "in flight" in resp.json()["detail"]
        assert passwords.HASHES._value.get() == hashes  # refused before any hashing
        assert (await Api(api.client).login(account)).status_code == 200  # another client
    finally:
        await redis.delete(busy_key)
    assert (await api.login(account)).status_code == 200
    assert int(await redis.get(busy_key) or 0) == 0


@pytest.mark.parametrize("settings_changes", [{"signup_client_limit": 3}])
async def test_signups_are_counted_per_client(api: Api) -> None:
    for _ in range(3):
        await api.signup(email())
    refused = await api.call("POST", SIGNUP, json={"email": email(), "password": PASSWORD})
    assert refused.status_code == 429
    assert 3000 <= int(refused.headers["retry-after"]) <= 3600  # the rest of the hour
    assert "signups" in refused.json()["detail"]
    await Api(api.client).signup(email())  # another client


async def test_a_full_hashing_queue_is_503_at_once(app: Litestar, api: Api, account: Account) -> None:
    """The queue's bound is per app; fill it the way a storm would, by holding its places."""
    work = app.state.container.passwords
    hashes = passwords.HASHES._value.get()
    saved = work.queued
    work.queued = work.queue_limit
    try:
        for resp in (
            await api.login(account),
            await Api(api.client).call("POST", SIGNUP, json={"email": email(), "password": PASSWORD}),
        ):
            assert resp.status_code == 503, resp.text
            assert int(resp.headers["retry-after"]) == 1
        assert passwords.HASHES._value.get() == hashes
    finally:
        work.queued = saved
    assert (await api.login(account)).status_code == 200


def _nice_of(tid: int) -> int:
    """A thread's nice value as Linux reports it (/proc/.../stat, 19th field; comm may hold spaces)."""
    return int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _pooled_thread() -> int:
    time.sleep(0.05)  # long enough that the pool starts each of its threads
    return threading.get_native_id()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
async def test_hashing_threads_run_under_sched_idle_when_asked() -> None:
    """AUTH_HASH_IDLE: a thread that answers a request preempts a hash the moment it wakes; only the
    pool's threads."""
    work = passwords.Passwords(auth_settings(hash_threads=2, hash_idle=True))
    try:
        loop = asyncio.get_running_loop()
        started = (loop.run_in_executor(work._pool, _pooled_thread) for _ in range(4))
        tids = set(await asyncio.gather(*started))
        assert len(tids) == 2, tids
        assert {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_IDLE}
        assert await work.verify(await work.hash(PASSWORD), PASSWORD)  # and they hash
        assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the event loop's thread is left as it was
    finally:
        work._pool.shutdown()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread priorities in Linux /proc")
@pytest.mark.parametrize("nice", [0, 7])
async def test_hashing_threads_run_at_the_configured_nice_value(nice: int) -> None:
    """By default (SCHED_IDLE off: it starves hashing on a saturated machine), the threads that answer
    requests are scheduled before the hashing ones, which still get a share of the cores."""
    here = _nice_of(threading.get_native_id())
    work = passwords.Passwords(auth_settings(hash_nice=nice, hash_threads=2))
    try:
        loop = asyncio.get_running_loop()
        started = (loop.run_in_executor(work._pool, _pooled_thread) for _ in range(4))
        tids = set(await asyncio.gather(*started))
        assert len(tids) == 2, tids
        assert {_nice_of(tid) for tid in tids} == {max(nice, here)}
        assert {os.sched_getscheduler(tid) for tid in tids} == {os.SCHED_OTHER}
        assert await work.verify(await work.hash(PASSWORD), PASSWORD)  # and they hash
        assert _nice_of(threading.get_native_id()) == here  # only those threads
    finally:
        work._pool.shutdown()
