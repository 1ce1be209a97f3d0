"""One client flooding the password routes cannot deny service to the others (a correctness check:
which answers, never how fast)."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support.http import Client
from tests.support.system import System
from tests.support.users import PASSWORD, new_email, signup

pytestmark = pytest.mark.e2e

FLOOD_CONNECTIONS = 100
FLOOD_REQUESTS = 300


async def metric_total(http: Client, system: System, name: str, **labels: str) -> float:
    text = (await http("GET", system.metrics_url)).body.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def login_ok(http: Client, system: System, email: str) -> int:
    reply = await http("POST", f"{system.url}/api/auth/login", json={"email": email, "password": PASSWORD})
    return reply.status


async def test_a_signup_and_login_flood_leaves_others_working(http: Client, system: System) -> None:
    other = await signup(http, system.url)
    canvas = await other.canvas(isPublic=True)
    victim = await signup(http, system.url)
    marked_down = await metric_total(
        http, system, "canvasverse_gateway_upstream_failures_total", upstream="auth"
    )
    left = iter(range(FLOOD_REQUESTS))
    flood: list[tuple[int, str | None]] = []
    done = asyncio.Event()

    async def flooder(n: int) -> None:
        for i in left:
            if i % 2:
                body = {"email": new_email(), "password": PASSWORD}
                reply = await http("POST", f"{system.url}/api/auth/signup", json=body)
            else:
                body = {"email": victim.email if n % 3 else new_email(), "password": "wrong password"}
                reply = await http("POST", f"{system.url}/api/auth/login", json=body)
            flood.append((reply.status, reply.headers.get("Retry-After")))

    async def reader() -> list[int]:
        statuses = []
        while not done.is_set() or len(statuses) < 20:
            statuses.append((await other.call("GET", "/api/users/me")).status)
            statuses.append((await other.call("GET", "/api/auth/sessions")).status)
            statuses.append((await http("GET", f"{system.url}/api/canvases/{canvas['id']}")).status)
        return statuses

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(flooder(n) for n in range(FLOOD_CONNECTIONS)))
    done.set()
    others = await reading
    assert set(others) == {200}, sorted(set(others))
    statuses = {status for status, _ in flood}
    assert statuses <= {201, 401, 429, 503}, statuses  # never 500, 502 or 504
    assert any(status in (429, 503) for status in statuses)  # the excess was refused
    for status, retry_after in flood:
        if status in (429, 503):
            assert retry_after is not None
            assert re.fullmatch(r"[1-9][0-9]*", retry_after)
    # The gateway never timed out on, failed to reach, or marked down the auth service.
    failures = "canvasverse_gateway_upstream_failures_total"
    assert await metric_total(http, system, failures, upstream="auth") == marked_down
    for status in ("502", "503", "504"):
        assert await metric_total(http, system, failures, upstream="auth-password", status=status) == 0
    assert (await login_ok(http, system, victim.email)) in (200, 429)  # locked by its failures, not broken
