"""Helpers for the canvas tests: the app in-process, signed credentials, a caller that talks like the gateway.

Imported by test modules only (collected after tests/conftest.py configured the environment).

The app runs in the test's own event loop behind httpx's ASGI transport. Litestar 2's AsyncTestClient
runs the app (and its lifespan: the PostgreSQL pool, the Redis client) in a second event loop in a
portal thread and blocks the test's loop on every request, which rules out concurrent requests and
makes the tests' own database calls cross event loops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
from litestar import Litestar

from services.canvas.settings import CanvasSettings, settings
from shared import internal_auth


def canvas_settings(**changes: Any) -> CanvasSettings:
    """The test settings, by default without the background loops (tests drive flushes themselves)."""
    return msgspec.structs.replace(settings, **{"run_background": False, **changes})


@asynccontextmanager
async def running(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give a client that calls it in-process.

    The lifespan runs in a task of its own: it holds an anyio task group, which must be left by the
    task that entered it (pytest-asyncio runs fixture setup and teardown in different tasks).
    """
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    lifespan = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait([lifespan, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if lifespan.done():
        lifespan.result()  # startup failed: raise its error
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://canvas.test") as client:
            yield client
    finally:
        stop.set()
        await lifespan


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = 10.0, interval: float = 0.05
) -> None:
    """Wait until `check()` holds (for work done by background loops or other processes)."""
    for _ in range(int(within / interval)):
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s")


def signed(uid: str | None) -> dict[str, str]:
    return {internal_auth.HEADER: internal_auth.sign(settings.secret, user_id=uid)}


async def insert_canvases(
    owner: uuid.UUID, count: int, *, created_at: datetime | None = None, **fields: Any
) -> list[uuid.UUID]:
    """Canvases written straight to the database (bulk data, or what the API would refuse)."""
    from services.canvas.tables import Canvas

    when = created_at or datetime.now(UTC)
    values = {
        "title": "t",
        "type": "bulk",
        "code": "",
        "description": "",
        "tags": [],
        "is_public": True,
        **fields,
    }
    rows = [
        Canvas(id=uuid.uuid4(), user_id=owner, views=0, created_at=when, updated_at=when, **values)
        for _ in range(count)
    ]
    for start in range(0, count, 1000):
        await Canvas.insert(*rows[start : start + 1000]).run()
    return [row.id for row in rows]


def canvas_body(**fields: Any) -> dict[str, Any]:
    return {"title": "A canvas", "type": "python", "code": "print(42)", **fields}


class Caller:
    """Someone calling the canvas service through the gateway (uid None = anonymous)."""

    def __init__(self, client: httpx.AsyncClient, uid: str | None) -> None:
        self.client = client
        self.uid = uid

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**signed(self.uid), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def create(self, **fields: Any) -> dict[str, Any]:
        resp = await self.request("POST", "/api/canvases", json=canvas_body(**fields))
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def get(self, canvas_id: str) -> httpx.Response:
        return await self.request("GET", f"/api/canvases/{canvas_id}")
