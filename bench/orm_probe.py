"""Scenario 3, in its own process: the canvas service's get-by-id code path against the bare driver.

Run by the harness as `python -m bench.orm_probe CANVAS_ID USER_ID SECONDS CONCURRENCY` with the
system's environment (the service binds its tables to CANVAS_DATABASE_URL at import time, hence a
process per database). Prints one JSON line: per variant, operations, seconds, p50/p99 in ms.

- "orm": `services.canvas.canvases.check_visible`, the select-by-id + visibility check that every
  canvas read starts with, on the service's own engine (shared/db.py) and pool size.
- "raw": the same SELECT and check on one persistent aiosqlite connection / an asyncpg pool of the
  same size, rows as the driver returns them.
- "stock" (SQLite only, for contrast): the service's code path on Piccolo's stock SQLiteEngine.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

from bench.timing import measure

COLUMNS = "id, title, type, code, description, tags, user_id, is_public, views, created_at, updated_at"
SELECT = f"SELECT {COLUMNS} FROM canvas WHERE id = ? LIMIT 1"


def _visible(row: dict[str, Any] | None, uid: uuid.UUID) -> None:
    if row is None or not (row["is_public"] or str(row["user_id"]) == str(uid)):
        raise LookupError("canvas not found")


async def raw_op(url: str, canvas_id: uuid.UUID, uid: uuid.UUID, pool_size: int) -> tuple[Any, Any]:
    """(operation, closer) on the bare driver."""
    if url.startswith("sqlite"):
        import aiosqlite

        conn = await aiosqlite.connect(url.removeprefix("sqlite:///"))
        conn.row_factory = aiosqlite.Row
        key: Any = str(canvas_id)

        async def sqlite_op() -> None:
            async with conn.execute(SELECT, (key,)) as cursor:
                row = await cursor.fetchone()
            _visible(None if row is None else dict(row), uid)

        return sqlite_op, conn.close
    import asyncpg

    pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size)  # as shared/db.py
    sql = SELECT.replace("?", "$1")

    async def pg_op() -> None:
        row = await pool.fetchrow(sql, canvas_id)
        _visible(None if row is None else dict(row), uid)

    return pg_op, pool.close


async def main(canvas_id: uuid.UUID, uid: uuid.UUID, seconds: float, concurrency: int) -> dict[str, Any]:
    from piccolo.engine.sqlite import SQLiteEngine as StockSQLiteEngine

    from services.canvas import canvases, db
    from services.canvas.settings import from_environment
    from services.canvas.tables import Canvas
    from shared.db import engine_lifespan, make_engine

    warmup = min(2.0, seconds / 2)

    async def orm_op() -> None:
        await canvases.check_visible(canvas_id, uid)

    results: dict[str, Any] = {}
    settings = from_environment()
    engine = make_engine(settings.database_url)
    with db.bound(engine):
        async with engine_lifespan(engine, settings.db_pool_size):
            await measure(orm_op, warmup, concurrency)
            results["orm"] = await measure(orm_op, seconds, concurrency)
    op, close = await raw_op(settings.database_url, canvas_id, uid, settings.db_pool_size)
    try:
        await measure(op, warmup, concurrency)
        results["raw"] = await measure(op, seconds, concurrency)
    finally:
        await close()
    if settings.database_url.startswith("sqlite"):
        Canvas._meta.db = StockSQLiteEngine(path=settings.database_url.removeprefix("sqlite:///"))
        results["stock"] = await measure(orm_op, seconds, concurrency)
    return results


if __name__ == "__main__":
    canvas, user, secs, conc = sys.argv[1:5]
    found = asyncio.run(main(uuid.UUID(canvas), uuid.UUID(user), float(secs), int(conc)))
    print("ORM_JSON " + json.dumps(found))
