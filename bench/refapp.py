"""Scenario 4's reference: the public canvas GET counting its view with a per-request UPDATE.

`GET /api/canvases/{id}` runs `UPDATE canvas SET views = views + 1 ... RETURNING` (one statement,
its own transaction) on the canvas service's database and answers the same Canvas JSON; every read
of one hot canvas thus waits for that row's lock. Litestar on uvicorn like the services, without
their middleware. Served by the harness with `BENCH_REF_DATABASE_URL` (sqlite:///... or
postgresql://...) and `BENCH_REF_POOL_SIZE` (the canvas service's default pool size).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiosqlite
import asyncpg
from litestar import Litestar, get
from litestar.exceptions import NotFoundException

from shared.timeutil import rfc3339

DATABASE_URL = os.environ.get("BENCH_REF_DATABASE_URL", "")
POOL_SIZE = int(os.environ.get("BENCH_REF_POOL_SIZE", "10"))
COLUMNS = "id, title, type, code, description, tags, user_id, is_public, views, created_at, updated_at"
UPDATE = f"UPDATE canvas SET views = views + 1 WHERE id = {{}} AND is_public RETURNING {COLUMNS}"


class Database:
    """One autocommit aiosqlite connection, or an asyncpg pool."""

    sqlite: aiosqlite.Connection | None = None
    pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if DATABASE_URL.startswith("sqlite"):
            self.sqlite = await aiosqlite.connect(
                DATABASE_URL.removeprefix("sqlite:///"), isolation_level=None
            )
            self.sqlite.row_factory = aiosqlite.Row
            for pragma in ("PRAGMA busy_timeout = 10000", "PRAGMA synchronous = NORMAL"):  # as shared/db.py
                await self.sqlite.execute(pragma)
        else:
            self.pool = await asyncpg.create_pool(DATABASE_URL, min_size=POOL_SIZE, max_size=POOL_SIZE)

    async def close(self) -> None:
        if self.sqlite is not None:
            await self.sqlite.close()
        if self.pool is not None:
            await self.pool.close()

    async def count_view(self, canvas_id: uuid.UUID) -> dict[str, Any] | None:
        if self.sqlite is not None:
            async with self.sqlite.execute(UPDATE.format("?"), (str(canvas_id),)) as cursor:
                row = await cursor.fetchone()
            return None if row is None else dict(row)
        assert self.pool is not None
        found = await self.pool.fetchrow(UPDATE.format("$1"), canvas_id)
        return None if found is None else dict(found)


db = Database()


def _time(value: Any) -> str:
    return rfc3339(value if isinstance(value, datetime) else datetime.fromisoformat(value))


@get("/api/canvases/{canvas_id:uuid}")
async def read_canvas(canvas_id: uuid.UUID) -> dict[str, Any]:
    row = await db.count_view(canvas_id)
    if row is None:
        raise NotFoundException("canvas not found")
    tags = row["tags"]
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "type": row["type"],
        "code": row["code"],
        "description": row["description"],
        "tags": json.loads(tags) if isinstance(tags, str) else list(tags),
        "userId": str(row["user_id"]),
        "isPublic": bool(row["is_public"]),
        "views": row["views"],
        "createdAt": _time(row["created_at"]),
        "updatedAt": _time(row["updated_at"]),
    }


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


@asynccontextmanager
async def lifespan(_: Litestar) -> AsyncIterator[None]:
    await db.open()
    try:
        yield
    finally:
        await db.close()


app = Litestar(route_handlers=[read_canvas, health], lifespan=[lifespan])
