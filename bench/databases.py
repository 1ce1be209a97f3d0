"""Fresh databases for one benchmarked system, and a raw driver connection to them.

SQLite: one file per service in the run's data folder. PostgreSQL: two new databases on the server
at BENCH_POSTGRES_URL (default 127.0.0.1:5432, user postgres), dropped when the run ends.
`RawDB` is the bare driver (one persistent aiosqlite connection, or an asyncpg pool): the reference
side of some scenarios, and how the harness seeds data and checks the databases directly.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
APPS = ("auth", "canvas")


async def postgres_version() -> str | None:
    try:
        conn = await asyncpg.connect(ADMIN_URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


class Databases:
    """The auth and canvas databases of one run: `urls` maps the app to its database URL."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.names = {app: f"cv_bench_{uuid.uuid4().hex[:10]}_{app}" for app in APPS}
        self.urls: dict[str, str] = {}

    async def create(self) -> None:
        if self.kind == "sqlite":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.urls = {app: f"sqlite:///{self.data_dir}/{app}.db" for app in APPS}
            return
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            for name in self.names.values():
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        base = ADMIN_URL.rsplit("/", 1)[0]
        self.urls = {app: f"{base}/{name}" for app, name in self.names.items()}

    async def backends(self) -> list[int]:
        """The PostgreSQL server processes serving connections to these databases."""
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = ANY($1::text[])", list(self.names.values())
            )
        finally:
            await conn.close()
        return [int(row["pid"]) for row in rows]

    async def drop(self) -> None:
        if self.kind != "postgres" or not self.urls:
            return
        conn = await asyncpg.connect(ADMIN_URL, timeout=5)
        try:
            for name in self.names.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        self.urls = {}


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
            await self._conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            await self._conn.commit()
            return
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            await conn.copy_records_to_table(table, records=rows, columns=columns)
