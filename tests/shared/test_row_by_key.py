"""shared/db.py's RowByKey, the services' one-row lookups, on the engine of this pass of `make test`:
the same row Piccolo reads, and inside a transaction the transaction's own writes."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from piccolo.columns import UUID, Array, Boolean, Text, Timestamptz, Varchar
from piccolo.table import Table

from shared.db import PostgresEngine, RowByKey, close_engine, make_engine, open_engine
from tests.support.databases import TEST_POSTGRES_URL, drop, fresh_databases


class Thing(Table):
    key = Varchar(length=64, unique=True)
    owner = UUID()
    created_at = Timestamptz()
    tags = Array(Varchar())
    shown = Boolean(default=False)
    note = Text(null=True, default=None)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Any]:
    urls, names = await fresh_databases(tmp_path, sqlite_prefix="", postgres_prefix="cv_rowkey")
    engine = make_engine(next(iter(urls.values())))
    await open_engine(engine, pool_size=2)
    previous = Thing._meta._db
    Thing._meta.db = engine
    try:
        await Thing.create_table().run()
        yield engine
    finally:
        Thing._meta._db = previous
        await close_engine(engine)
        await drop(names)


def a_thing(key: str) -> Thing:
    return Thing(
        key=key,
        owner=uuid.uuid4(),
        created_at=datetime(2026, 12, 7, 3, 4, 5, 678901, tzinfo=UTC),
        tags=["a", "b"],
        shown=True,
    )


async def test_it_reads_the_row_piccolo_reads_and_none_for_an_unknown_key(engine: Any) -> None:
    await Thing.insert(a_thing("one"), a_thing("two")).run()
    by_key = RowByKey(Thing, Thing.key)
    row = await by_key("one")
    piccolo = await Thing.select().where(Thing.key == "one").first().run()
    assert row == piccolo
    assert isinstance(row["owner"], uuid.UUID) or str(row["owner"]) == str(piccolo["owner"])
    assert row["created_at"] == datetime(2026, 12, 7, 3, 4, 5, 678901, tzinfo=UTC)
    assert row["tags"] == ["a", "b"]
    assert row["shown"] is True
    assert row["note"] is None
    assert await by_key("three") is None
    some = await RowByKey(Thing, Thing.key, [Thing.key, Thing.tags])("two")
    assert some == {"key": "two", "tags": ["a", "b"]}


async def test_inside_a_transaction_it_reads_what_the_transaction_wrote(engine: Any) -> None:
    by_key = RowByKey(Thing, Thing.key)
    async with engine.transaction():
        await Thing.insert(a_thing("mine")).run()
        assert (await by_key("mine") or {}).get("key") == "mine"
        # A task with a context of its own is outside the transaction: it does not see the row yet.
        assert await asyncio.create_task(by_key("mine"), context=contextvars.Context()) is None
    assert (await by_key("mine") or {}).get("key") == "mine"


async def test_on_postgresql_a_read_on_connections_the_server_dropped_is_answered(engine: Any) -> None:
    """`pg_terminate_backend` (or a restart) of the pool's idle connections: the next lookup gets
    its row, not an error (the pool replaces a dropped connection; the read is sent again once)."""
    if not isinstance(engine, PostgresEngine):
        pytest.skip("PostgreSQL's connections")
    await Thing.insert(a_thing("kept")).run()
    by_key = RowByKey(Thing, Thing.key)
    await asyncio.gather(by_key("kept"), by_key("kept"))  # both pooled connections opened
    admin = await asyncpg.connect(TEST_POSTGRES_URL)
    try:
        database = engine.config["dsn"].rsplit("/", 1)[1]
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await admin.close()
    assert killed >= 1
    for _ in range(3):
        assert (await by_key("kept") or {}).get("key") == "kept"


async def test_on_postgresql_the_lookups_of_one_loop_turn_are_one_statement(engine: Any) -> None:
    """40 lookups at once, of 20 keys (each twice) and 10 unknown ones: each gets its own row (a dict
    of its own) or None, and the server receives one or two statements, not 40 (the query loggers
    of both pooled connections count what each sent)."""
    if not isinstance(engine, PostgresEngine):
        pytest.skip("PostgreSQL's pool")
    await Thing.insert(*(a_thing(f"k{i}") for i in range(20))).run()
    by_key = RowByKey(Thing, Thing.key)
    sent: list[str] = []

    def logged(query: Any) -> None:
        sent.append(query.query)

    first, second = await engine.pool.acquire(), await engine.pool.acquire()  # both connections open
    for connection in (first, second):
        connection.add_query_logger(logged)
        await engine.pool.release(connection)
    keys = [f"k{i % 20}" for i in range(40)] + [f"unknown{i}" for i in range(10)]
    rows = await asyncio.gather(*(by_key(key) for key in keys))
    for key, row in zip(keys, rows, strict=True):
        assert (row or {}).get("key") == (None if key.startswith("unknown") else key)
    assert rows[0] is not rows[20]  # the same key twice: two dicts
    assert 1 <= len([query for query in sent if "ANY($1)" in query]) <= 2, sent


async def test_every_lookup_reads_the_database_so_a_deleted_row_is_gone_at_once(engine: Any) -> None:
    """A revoked session must fail its next validation: no lookup is answered from an earlier one."""
    await Thing.insert(a_thing("gone")).run()
    by_key = RowByKey(Thing, Thing.key)
    assert (await by_key("gone") or {}).get("key") == "gone"
    await Thing.delete().where(Thing.key == "gone").run()
    assert await by_key("gone") is None


async def test_on_postgresql_a_key_the_column_refuses_fails_its_own_lookup_only(engine: Any) -> None:
    if not isinstance(engine, PostgresEngine):
        pytest.skip("PostgreSQL's pool")
    await Thing.insert(a_thing("good")).run()
    by_key = RowByKey(Thing, Thing.key)
    good, bad = await asyncio.gather(by_key("good"), by_key(12345), return_exceptions=True)
    assert isinstance(good, dict)
    assert good["key"] == "good"
    assert isinstance(bad, asyncpg.DataError)


def test_the_key_must_be_read() -> None:
    with pytest.raises(ValueError, match="key"):
        RowByKey(Thing, Thing.key, [Thing.tags])


async def test_on_postgresql_a_batch_whose_connection_is_killed_mid_statement_answers_every_lookup(
    engine: Any,
) -> None:
    """20 lookups wait as one statement behind a table lock; the server kills that statement's
    connection (`pg_terminate_backend`): the statement is sent again on another connection, and once
    the lock is gone every lookup gets its row. No lookup is lost or left waiting."""
    if not isinstance(engine, PostgresEngine):
        pytest.skip("PostgreSQL's pool")
    await Thing.insert(*(a_thing(f"w{i}") for i in range(20))).run()
    by_key = RowByKey(Thing, Thing.key)
    await by_key("w0")  # the statement prepared, the pool open
    database = engine.config["dsn"].rsplit("/", 1)[1]
    admin = await asyncpg.connect(TEST_POSTGRES_URL.rsplit("/", 1)[0] + "/" + database)
    try:
        locker = admin.transaction()
        await locker.start()
        await admin.execute(f"LOCK TABLE {Thing._meta.tablename} IN ACCESS EXCLUSIVE MODE")
        lookups = asyncio.gather(*(by_key(f"w{i}") for i in range(20)))
        waiting: list[int] = []
        for _ in range(100):  # the batch's statement, waiting for the lock
            waiting = [
                row["pid"]
                for row in await admin.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                    database,
                )
            ]
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert len(waiting) == 1, waiting  # one statement for the 20 lookups
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", waiting[0])
        await asyncio.sleep(0.2)  # the statement sent again, waiting for the lock once more
        await locker.rollback()
        rows = await asyncio.wait_for(lookups, timeout=10)
    finally:
        await admin.close()
    assert [(row or {}).get("key") for row in rows] == [f"w{i}" for i in range(20)]
