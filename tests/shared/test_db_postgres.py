"""shared/db.py's PostgreSQL pool against a real server (the PostgreSQL pass of `make test`)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from shared.db import PostgresEngine, close_engine, make_engine, open_engine
from tests.support.databases import drop, fresh_databases, on_postgres

pytestmark = pytest.mark.skipif(not on_postgres(), reason="needs PostgreSQL (TEST_DB=postgres)")


async def test_a_released_connection_runs_no_reset_query_and_an_open_transaction_is_rolled_back(
    tmp_path: Path,
) -> None:
    urls, names = await fresh_databases(tmp_path, sqlite_prefix="", postgres_prefix="cv_pool")
    url = next(iter(urls.values()))
    engine = make_engine(url)
    assert isinstance(engine, PostgresEngine)
    await open_engine(engine, pool_size=1)  # one connection: every acquire below gets the same one
    watcher = await asyncpg.connect(url)
    try:
        assert engine.pool is not None
        async with engine.pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            await conn.execute("SELECT 'the last query before release'")
        last = await watcher.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert last == "SELECT 'the last query before release'"  # asyncpg's default: RESET ALL etc.

        async with engine.pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (x int)")  # released without COMMIT
        async with engine.pool.acquire() as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None
    finally:
        await watcher.close()
        await close_engine(engine)
        await drop(names)
