"""Fresh databases for one benchmarked system, and a raw driver connection to them.

SQLite: one file per service in the run's data folder. PostgreSQL: two new databases on the server
at BENCH_POSTGRES_URL (default 127.0.0.1:5432, user postgres), dropped when the run ends.
`RawDB` is the bare driver (one persistent aiosqlite connection, or an asyncpg pool): the reference
side of some scenarios, and how the harness seeds data and checks the databases directly. Creating,
dropping and `RawDB` are devtools/databases.py's, which the test suite uses too.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg

from devtools.databases import APPS, RawDB, create_databases, drop_databases, new_names

__all__ = ["ADMIN_URL", "APPS", "Databases", "RawDB", "postgres_version"]

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


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
        self.names = new_names("cv_bench")
        self.urls: dict[str, str] = {}

    async def create(self) -> None:
        if self.kind == "sqlite":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.urls = {app: f"sqlite:///{self.data_dir}/{app}.db" for app in APPS}
            return
        self.urls = await create_databases(ADMIN_URL, self.names)

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
        await drop_databases(ADMIN_URL, list(self.names.values()))
        self.urls = {}
