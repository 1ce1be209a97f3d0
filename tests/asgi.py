"""Run a service's Litestar app in the test's own event loop, behind httpx's ASGI transport.

Litestar 2's AsyncTestClient runs the app and its lifespan in a second event loop in a portal
thread, which would put the PostgreSQL pool out of reach of the tests' own database calls and
serialise concurrent requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from litestar import Litestar


@asynccontextmanager
async def running(app: Litestar, base_url: str = "http://service.test") -> AsyncIterator[httpx.AsyncClient]:
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
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
    finally:
        stop.set()
        await lifespan


async def ready_status(client: httpx.AsyncClient, status: int = 503, attempts: int = 30) -> httpx.Response:
    """GET /ready until it answers `status` (it answers from a check up to 1 s old), or the last answer."""
    for _ in range(attempts):
        reply = await client.get("/ready")
        if reply.status_code == status:
            break
        await asyncio.sleep(0.1)
    return reply
