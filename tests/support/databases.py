"""Fresh databases for a test run: SQLite files, or (TEST_DB=postgres) new databases on the server at
TEST_POSTGRES_URL, created and dropped by devtools/databases.py (which the benchmarks use too)."""

from __future__ import annotations

import os
from pathlib import Path

from devtools.databases import APPS, create_databases, drop_databases, new_names

TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def on_postgres() -> bool:
    return os.environ.get("TEST_DB", "sqlite") == "postgres"


async def fresh_databases(
    data_dir: Path, *, sqlite_prefix: str, postgres_prefix: str
) -> tuple[dict[str, str], list[str]]:
    """The database URL of each service (by app name), and the PostgreSQL databases to drop after."""
    if not on_postgres():
        return {app: f"sqlite:///{data_dir}/{sqlite_prefix}{app}.db" for app in APPS}, []
    names = new_names(postgres_prefix)
    return await create_databases(TEST_POSTGRES_URL, names), list(names.values())


async def drop(names: list[str]) -> None:
    await drop_databases(TEST_POSTGRES_URL, names)
