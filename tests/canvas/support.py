"""Helpers for the canvas tests: the app in-process, signed credentials, a caller that talks like the gateway.

Imported by test modules only (collected after tests/conftest.py configured the environment).

The app runs in the test's own event loop behind httpx's ASGI transport. Litestar 2's AsyncTestClient
runs the app (and its lifespan: the PostgreSQL pool, the Redis client) in a second event loop in a
portal thread and blocks the test's loop on every request, which rules out concurrent requests and
makes the tests' own database calls cross event loops.
"""

from __future__ import annotations

import secrets
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
from litestar import Litestar

from services.canvas.settings import CanvasSettings, from_environment
from shared import internal_auth
from tests import asgi

SECRET = from_environment().secret  # the one tests/conftest.py put in the environment


def canvas_settings(**changes: Any) -> CanvasSettings:
    """The test settings, by default without the background loops (tests drive flushes themselves)."""
    return msgspec.structs.replace(from_environment(), **{"run_background": False, **changes})


def running(app: Litestar) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return asgi.running(app, "http://canvas.test")


def signed(uid: str | None, audience: str = "canvas") -> dict[str, str]:
    """The credential the gateway signs: a signed-in user always comes with their session."""
    sid = None if uid is None else f"session-of-{uid}"
    return {internal_auth.HEADER: internal_auth.sign(SECRET, audience=audience, user_id=uid, session_id=sid)}


async def insert_canvases(
    owner: uuid.UUID, count: int, *, created_at: datetime | None = None, **fields: Any
) -> list[uuid.UUID]:
    """Canvases written straight to the database (bulk data, or what the API would refuse)."""
    from services.canvas.search import index_text
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
    # The service writes the search words with the row; so does this helper (services/canvas/search.py).
    words = index_text(values["title"], values["description"], values["tags"])
    rows = [
        Canvas(
            id=uuid.uuid4(),
            user_id=owner,
            views=0,
            created_at=when,
            updated_at=when,
            search_text=words,
            **values,
        )
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


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def list_all(caller: Caller, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        resp = await caller.request("GET", path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        page = resp.json()
        items += page["items"]
        cursor = page["nextCursor"]
        if cursor is None:
            return items


async def stored_views(canvas_id: str) -> int:
    """The views the database holds (flushed ones only)."""
    from services.canvas.tables import Canvas

    row = await Canvas.select(Canvas.views).where(Canvas.id == uuid.UUID(canvas_id)).first().run()
    assert row is not None
    return int(row["views"])


async def read_views(caller: Caller, canvas_id: str) -> int:
    resp = await caller.get(canvas_id)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["views"])
