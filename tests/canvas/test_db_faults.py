"""A database connection dropped mid-transaction (`pg_terminate_backend`) must not outlive its transaction.

PostgreSQL only: the fault is a backend killed by the server while a transaction waits on a row lock.
Before the fix, Piccolo's `PostgresTransaction.__aexit__` raised from its rollback and skipped both the
pool release and the reset of `current_transaction`, so the long-lived task that ran it nested every
later transaction in the dead one ("connection has been released back to the pool") until a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import asyncpg
import pytest
from httpx import AsyncClient
from litestar import Litestar
from redis.asyncio import Redis

from services.canvas.read_cache import ReadCache
from tests.canvas.support import Caller, canvas_settings, insert_canvases, running
from tests.support.waiting import eventually

pytestmark = pytest.mark.skipif(
    os.environ.get("TEST_DB", "sqlite") != "postgres", reason="pg_terminate_backend needs PostgreSQL"
)


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the canvas database (holds locks, kills backends)."""
    conn = await asyncpg.connect(os.environ["CANVAS_DATABASE_URL"])
    yield conn
    await conn.close()


async def _blocked_backend(admin: asyncpg.Connection, statement: str) -> int:
    """The pid of the backend waiting on a lock while running a statement starting with `statement`."""
    pids: list[int] = []

    async def found() -> bool:
        # Inside a transaction the activity view is a snapshot taken once: take a new one each time.
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE $1",
            statement + "%",
        )
        pids[:] = [row["pid"] for row in rows]
        return bool(pids)

    await eventually(found, within=20)
    return pids[0]


async def _kill_while_blocked(
    admin: asyncpg.Connection, canvas_id: uuid.UUID, statement: str, work: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """Lock the canvas row, start `work`, wait for its `statement` to block on the lock, kill that
    backend, release the lock; returns the task running `work`."""
    lock = admin.transaction()
    await lock.start()
    try:
        await admin.execute("SELECT id FROM canvas WHERE id = $1 FOR UPDATE", canvas_id)
        task = asyncio.create_task(work)
        pid = await _blocked_backend(admin, statement)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await lock.rollback()
    return task


async def test_a_transaction_whose_connection_died_leaves_its_task_clean(admin: asyncpg.Connection) -> None:
    from services.canvas import db
    from shared.db import make_engine

    [canvas_id] = await insert_canvases(uuid.uuid4(), 1)

    engine = make_engine(canvas_settings().database_url)
    with db.bound(engine):
        await _die_and_recover(admin, engine, canvas_id)


async def _die_and_recover(admin: asyncpg.Connection, engine: Any, canvas_id: uuid.UUID) -> None:
    from services.canvas.tables import Canvas
    from shared.db import engine_lifespan

    async with engine_lifespan(engine, pool_size=3):

        async def bump() -> None:
            async with engine.transaction():
                await Canvas.update({Canvas.views: Canvas.views + 1}).where(Canvas.id == canvas_id).run()

        async def long_lived_loop() -> None:
            """One task: its first transaction loses its connection, the next three must commit."""
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
                await bump()
            assert engine.current_transaction.get() is None
            for _ in range(3):
                await bump()

        loop = await _kill_while_blocked(admin, canvas_id, "UPDATE", long_lived_loop())
        await loop
        assert await admin.fetchval("SELECT views FROM canvas WHERE id = $1", canvas_id) == 3
        pool = engine.pool
        assert pool is not None
        # Every connection went back to the pool: three more transactions at once do not wait forever.
        async with asyncio.timeout(20):
            await asyncio.gather(*(bump() for _ in range(3)))


@pytest.fixture
def background_app() -> Litestar:
    from services.canvas.app import create_app

    return create_app(canvas_settings(run_background=True, flush_interval=0.1, claim_idle_ms=60_000))


@pytest.fixture
async def background_client(background_app: Litestar) -> AsyncIterator[AsyncClient]:
    async with running(background_app) as client:
        yield client


async def test_the_view_flusher_survives_its_connection_killed_mid_flush(
    background_client: AsyncClient, admin: asyncpg.Connection
) -> None:
    owner = str(uuid.uuid4())
    alice = Caller(background_client, owner)
    canvas_id = uuid.UUID((await alice.create(isPublic=True))["id"])

    lock = admin.transaction()
    await lock.start()
    await admin.execute("SELECT id FROM canvas WHERE id = $1 FOR UPDATE", canvas_id)
    try:
        for _ in range(5):
            assert (await alice.get(str(canvas_id))).status_code == 200
        pid = await _blocked_backend(admin, "UPDATE")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await lock.rollback()
    for _ in range(5):
        assert (await alice.get(str(canvas_id))).status_code == 200

    async def flushed() -> bool:
        return await admin.fetchval("SELECT views FROM canvas WHERE id = $1", canvas_id) == 10

    await eventually(flushed, within=20)


async def test_the_cascade_survives_its_connection_killed_mid_delete(
    background_client: AsyncClient, admin: asyncpg.Connection, redis: Redis
) -> None:
    from shared.events import UserDeleted, publish
    from shared.timeutil import utcnow

    owner = uuid.uuid4()
    canvas_ids = await insert_canvases(owner, 3)

    lock = admin.transaction()
    await lock.start()
    await admin.execute("SELECT id FROM canvas WHERE id = $1 FOR UPDATE", canvas_ids[0])
    try:
        event = UserDeleted(event_id=str(uuid.uuid4()), user_id=str(owner), occurred_at=utcnow())
        await publish(redis, event)
        pid = await _blocked_backend(admin, "SELECT")  # the cascade locking its batch
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await lock.rollback()

    async def gone() -> bool:
        return await admin.fetchval("SELECT count(*) FROM canvas WHERE user_id = $1", owner) == 0

    # Well before the reclaim (60 s here): the failed delivery is retried at once.
    await eventually(gone, within=20)


async def test_the_cascade_and_the_view_flush_never_deadlock(
    admin: asyncpg.Connection, cache: ReadCache
) -> None:
    """Both lock canvas rows in id order: racing them many times leaves the deadlock counter unchanged."""
    from services.canvas.cascade import delete_user
    from services.canvas.view_counter import apply_batch

    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    before = await admin.fetchval(deadlocks)
    # The tables are bound to this run's engine (tests/conftest.py), already open.
    for _ in range(15):
        owner = uuid.uuid4()
        ids = await insert_canvases(owner, 60)
        counts = {str(canvas_id): 1 for canvas_id in reversed(ids)}
        await asyncio.gather(
            delete_user(owner, cache=cache, batch_size=7),
            apply_batch(uuid.uuid4().hex, counts),
            apply_batch(uuid.uuid4().hex, dict(list(counts.items())[::2])),
        )
        assert await admin.fetchval("SELECT count(*) FROM canvas WHERE user_id = $1", owner) == 0
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    assert await admin.fetchval(deadlocks) == before


async def test_a_database_that_refuses_connections_answers_503_with_one_log_line(
    client: AsyncClient, anon: Caller, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool is pointed at a port nothing listens on (a database that refuses connections)."""
    from services.canvas import db
    from shared.db import close_engine, open_engine

    engine = db.engine()  # the running app's
    config = dict(engine.config)
    await close_engine(engine)
    engine.config = {"dsn": f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/gone"}
    await engine.start_connection_pool(min_size=0, max_size=2)
    try:
        caplog.clear()
        for _ in range(3):
            resp = await anon.request("GET", "/api/canvases")
            assert resp.status_code == 503, resp.text
            assert resp.headers["content-type"].startswith("application/problem+json")
            assert int(resp.headers["retry-after"]) > 0
            assert resp.json()["status"] == 503
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(records) == 3  # one line per request
        assert not any(r.exc_info for r in records)  # and no traceback
        assert (await client.get("/ready")).status_code == 503
    finally:
        await close_engine(engine)
        engine.config = config
        await open_engine(engine, 3)
    assert (await anon.request("GET", "/api/canvases")).status_code == 200
