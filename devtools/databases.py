"""Fresh PostgreSQL databases for a test run or a benchmark run, and a raw driver connection to them.

The one place that creates and drops databases on a server for the test suite (tests/support/) and
the benchmarks (bench/), which both import devtools. `RawDB` is the bare driver (one persistent
aiosqlite connection, or an asyncpg pool), for what checks or seeds a database directly.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import aiosqlite
import asyncpg

APPS = ("auth", "canvas")


def new_names(prefix: str) -> dict[str, str]:
    """A fresh database name per service: `<prefix>_<random>_<app>`."""
    run = uuid.uuid4().hex[:10]
    return {app: f"{prefix}_{run}_{app}" for app in APPS}


async def create_databases(admin_url: str, names: dict[str, str]) -> dict[str, str]:
    """Create each named database on `admin_url`'s server; the URL of each, by the same key."""
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        for name in names.values():
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0]
    return {key: f"{base}/{name}" for key, name in names.items()}


async def drop_databases(admin_url: str, names: list[str]) -> None:
    """Drop the databases (their open connections too); a missing one is fine."""
    if not names:
        return
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


_PLACEHOLDER = re.compile(r"\?")


def _numbered(sql: str) -> str:
    """`?` placeholders to asyncpg's `$1, $2, ...`."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


class RawDB:
    """SQL with `?` placeholders on either engine, straight through the driver."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self._conn: aiosqlite.Connection | None = None
        self._pool: asyncpg.Pool | None = None

    async def open(self, pool_size: int = 10) -> RawDB:
        if self.sqlite:
            self._conn = await aiosqlite.connect(self.url.removeprefix("sqlite:///"))
            self._conn.row_factory = aiosqlite.Row
            await self._conn.execute("PRAGMA busy_timeout = 10000")
        else:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=pool_size)
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        if self._pool is not None:
            await self._pool.close()

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self._conn is not None:
            async with self._conn.execute(sql, args) as cursor:
                return [dict(row) for row in await cursor.fetchall()]
        assert self._pool is not None
        return [dict(row) for row in await self._pool.fetch(_numbered(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> dict[str, Any] | None:
        if self._conn is not None:
            async with self._conn.execute(sql, args) as cursor:
                row = await cursor.fetchone()
                return None if row is None else dict(row)
        assert self._pool is not None
        found = await self._pool.fetchrow(_numbered(sql), *args)
        return None if found is None else dict(found)

    async def scalar(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def insert_many(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        """Bulk insert in one transaction (COPY on PostgreSQL)."""
        if self._conn is not None:
            marks = ", ".join("?" for _ in columns)
            # `table` and `columns` are the caller's own names, never input.
            insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
            await self._conn.executemany(insert, rows)
            await self._conn.commit()
            return
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            await conn.copy_records_to_table(table, records=rows, columns=columns)
