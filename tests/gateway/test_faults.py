"""Upstreams that refuse or hang, the rate limit, and the ops routes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devtools.processes import Process
from devtools.redis_server import RedisServer, free_port
from tests.support.http import Client, bearer
from tests.support.processes import url_of
from tests.support.stubs import Stub

pytestmark = pytest.mark.e2e


async def test_refused_upstream_is_502_then_marked_down_503(
    http: Client, start_gateway: Callable[..., Process]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = url_of(start_gateway(canvas_url=dead, circuit_failures=2, circuit_cooldown=30))
    statuses = [(await http("GET", f"{gateway}/api/canvases")).status for _ in range(2)]
    assert statuses == [502, 502]
    reply = await http("GET", f"{gateway}/api/canvases")
    assert reply.status == 503
    assert 1 <= int(reply.headers["Retry-After"]) <= 30
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert (await http("POST", f"{gateway}/api/auth/login", json={})).status == 200  # auth is unaffected
    text = (await http("GET", f"{gateway}/metrics")).body.decode()
    assert 'canvasverse_gateway_upstream_failures_total{status="502",upstream="canvas"} 2.0' in text
    assert 'canvasverse_gateway_upstream_failures_total{status="503",upstream="canvas"} 1.0' in text


async def test_hanging_upstream_is_504(
    http: Client, start_gateway: Callable[..., Process], hanging_port: int, upstream: Stub
) -> None:
    gateway = url_of(
        start_gateway(canvas_url=f"http://127.0.0.1:{hanging_port}", read_timeout=0.3, circuit_failures=100)
    )
    token, _ = await upstream.session()
    reply = await http("POST", f"{gateway}/api/canvases", json={"title": "t"}, headers=bearer(token))
    assert reply.status == 504
    assert reply.json()["status"] == 504
    assert "X-Request-Id" in reply.headers


async def test_general_rate_limit_is_429_with_retry_after(
    http: Client, start_gateway: Callable[..., Process], redis_server: RedisServer
) -> None:
    # Counts are shared by every gateway on one Redis: this one gets a database of its own, and a
    # window (a day) this test will not straddle.
    own_redis = {"REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/3"}
    gateway = url_of(start_gateway(env=own_redis, rate_limit=5, rate_limit_unit="day"))
    replies = [await http("GET", f"{gateway}/api/canvases") for _ in range(6)]
    assert [r.status for r in replies] == [200] * 5 + [429]
    assert replies[0].headers["RateLimit-Limit"] == "5"
    assert replies[4].headers["RateLimit-Remaining"] == "0"
    limited = replies[5]
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(limited.headers["Retry-After"]) <= 86400
    assert (await http("GET", f"{gateway}/health")).status == 200  # ops routes are not limited


async def test_health_ready_and_metrics(http: Client, gateway: str) -> None:
    assert (await http("GET", f"{gateway}/health")).status == 200
    ready = await http("GET", f"{gateway}/ready")
    assert ready.status == 200
    assert ready.json()["checks"] == ["auth", "canvas", "redis"]
    await http("GET", f"{gateway}/api/canvases")
    await http("GET", f"{gateway}/api/nope")
    text = (await http("GET", f"{gateway}/metrics")).body.decode()
    assert 'canvasverse_gateway_requests_total{method="GET",route="/api/canvases",status="200"}' in text
    assert 'canvasverse_gateway_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert (
        'canvasverse_gateway_request_duration_seconds_count{route="/api/canvases",upstream="canvas"}' in text
    )
    assert 'canvasverse_gateway_session_cache_total{result="hit"}' in text


async def test_ready_names_the_service_that_is_down(
    http: Client, start_gateway: Callable[..., Process]
) -> None:
    gateway = url_of(start_gateway(auth_url=f"http://127.0.0.1:{free_port()}"))
    reply = await http("GET", f"{gateway}/ready")
    assert reply.status == 503
    assert reply.json()["failed"] == ["auth"]
