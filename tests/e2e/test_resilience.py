"""The gateway when parts of the system fail: Redis, the auth service, the canvas service."""

from __future__ import annotations

import asyncio
import re
import signal

import pytest
from redis.asyncio import Redis

from devtools.redis_server import RedisServer
from shared.session_cache import cache_key
from tests.support.http import Client, bearer
from tests.support.system import CIRCUIT_COOLDOWN, System
from tests.support.users import signup

pytestmark = [pytest.mark.e2e, pytest.mark.resilience]


async def metric(http: Client, system: System, name: str, **labels: str) -> float:
    text = (await http("GET", system.metrics_url)).body.decode()
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def validations(http: Client, system: System) -> float:
    return await metric(http, system, "canvasverse_gateway_session_validations_total", outcome="valid")


async def test_cache_hit_miss_and_single_flight(http: Client, own_gateway: System, redis: Redis) -> None:
    """Deltas of this gateway's own counters: no other test's traffic moves them, and its Redis
    budget keeps the cache in play on a loaded machine (see `own_gateway`)."""
    system = own_gateway
    user = await signup(http, system.url)
    before = await validations(http, system)
    hits = await metric(http, system, "canvasverse_gateway_session_cache_total", result="hit")
    assert (await user.call("GET", "/api/users/me/canvases")).status == 200  # miss: asks auth
    assert (await user.call("GET", "/api/users/me/canvases")).status == 200  # hit
    assert await validations(http, system) == before + 1
    assert await metric(http, system, "canvasverse_gateway_session_cache_total", result="hit") == hits + 1
    sid = (await user.call("GET", "/api/auth/sessions")).json()["items"][0]["id"]
    await redis.delete(cache_key(sid))
    replies = await asyncio.gather(*(user.call("GET", "/api/users/me/canvases") for _ in range(30)))
    assert {r.status for r in replies} == {200}
    assert await validations(http, system) == before + 2  # thirty concurrent misses, one auth call


async def test_revocation_purges_the_cache(http: Client, system: System, redis: Redis) -> None:
    user = await signup(http, system.url)
    assert (await user.call("GET", "/api/users/me")).status == 200
    sid = (await user.call("GET", "/api/auth/sessions")).json()["items"][0]["id"]
    assert await redis.exists(cache_key(sid))
    assert (await user.call("POST", "/api/auth/logout")).status == 204
    assert not await redis.exists(cache_key(sid))
    assert (await user.call("GET", "/api/users/me")).status == 401


async def test_redis_stopped_fails_closed_then_recovers(
    http: Client, system: System, redis_server: RedisServer
) -> None:
    user = await signup(http, system.url)
    assert (await user.call("GET", "/api/users/me")).status == 200
    redis_server.stop()
    try:
        reply = await user.call("GET", "/api/users/me")
        assert reply.status == 200  # validated by the auth service itself
        assert reply.json()["id"] == user.id
        assert (await http("GET", f"{system.url}/api/users/me", headers=bearer("a" * 32))).status == 401
        system.auth.kill()
        reply = await user.call("GET", "/api/users/me/canvases")
        assert reply.status == 503  # neither the cache nor the auth service can vouch for the token
        assert reply.json()["detail"] == "Sessions cannot be checked right now"
        assert int(reply.headers["Retry-After"]) >= 1
    finally:
        redis_server.start()
        system.ensure_running()
    for _ in range(100):  # the breaker on the auth service lets a request through after its cooldown
        reply = await user.call("GET", "/api/users/me")
        if reply.status == 200:
            break
        await asyncio.sleep(0.1)
    assert reply.status == 200


async def test_canvas_killed_is_502_then_503_then_recovers(http: Client, system: System) -> None:
    system.canvas.kill()
    try:
        statuses = [(await http("GET", f"{system.url}/api/canvases")).status for _ in range(5)]
        assert statuses == [502] * 5
        reply = await http("GET", f"{system.url}/api/canvases")
        assert reply.status == 503
        assert 1 <= int(reply.headers["Retry-After"]) <= CIRCUIT_COOLDOWN
        assert (
            await http("POST", f"{system.url}/api/auth/login", json={})
        ).status == 422  # auth still routed
    finally:
        system.ensure_running()
    for _ in range(10 * (CIRCUIT_COOLDOWN + 5)):
        reply = await http("GET", f"{system.url}/api/canvases")
        if reply.status == 200:
            break
        await asyncio.sleep(0.1)
    assert reply.status == 200


async def test_canvas_hanging_is_504(http: Client, system: System) -> None:
    system.canvas.send_signal(signal.SIGSTOP)
    try:
        reply = await http("GET", f"{system.url}/api/canvases")
        assert reply.status == 504
        assert reply.headers["Content-Type"] == "application/problem+json"
    finally:
        system.canvas.send_signal(signal.SIGCONT)
    assert (await http("GET", f"{system.url}/api/canvases")).status == 200
