"""Faults against a system started the way docker-compose starts it: two uvicorn workers per web
process, Redis with append-only persistence, PostgreSQL (with TEST_DB=postgres; the scenarios that
need `pg_terminate_backend` or a database refusing connections are skipped on SQLite).

Every canvas write the gateway acknowledged (201) goes on a ledger; the last test checks it against
the databases: no acknowledged write lost, no canvas left without an owner. Each scenario brings back
what it broke, and asserts recovery within CASCADE_WITHIN seconds with no process restarted by hand.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import asyncpg
import pytest

from tests.resilience.support import canvases_gone, member, owners, until_not_503, users
from tests.support.http import Client
from tests.support.system import Stack, build_stack
from tests.support.users import PASSWORD, User
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.resilience, pytest.mark.slow]

POSTGRES = os.environ.get("TEST_DB", "sqlite") == "postgres"
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="a PostgreSQL fault")
RECOVERS_WITHIN = 10.0  # "within seconds" of the issue: after any single fault, under 10 s
SETTLES_WITHIN = 30.0  # a generous bound for background work on a loaded machine

# canvas id -> owner id of every create the gateway answered 201, across the module's scenarios
LEDGER: dict[str, str] = {}
DELETED_OWNERS: set[str] = set()


@pytest.fixture(scope="session")
async def compose(data_dir: Path) -> AsyncIterator[Stack]:
    async with build_stack(data_dir, "compose-faults", workers=2, appendonly=True) as running:
        yield running


def workers_of(process_pid: int) -> list[int]:
    """The pids of a uvicorn supervisor's worker processes: its children started by multiprocessing's
    spawn (not its resource tracker, also a child)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == process_pid and b"multiprocessing.spawn" in command:
                children.append(int(entry.name))
    return children


async def views_in_db(stack: Stack, canvas_id: str) -> int:
    sql = "SELECT views FROM canvas WHERE CAST(id AS VARCHAR(36)) = ?"
    return int(await stack.canvas_db.scalar(sql, canvas_id))


async def create(user: User) -> str | None:
    """A canvas create through the gateway; on the ledger if it was acknowledged."""
    reply = await user.call("POST", "/api/canvases", json={"title": "t", "type": "t", "code": ""})
    if reply.status == 201:
        LEDGER[reply.json()["id"]] = user.id
        return reply.json()["id"]  # type: ignore[no-any-return]
    return None


async def reads(user: User, canvas_id: str, stop: asyncio.Event, statuses: Counter[int]) -> None:
    while not stop.is_set():
        statuses[(await user.call("GET", f"/api/canvases/{canvas_id}")).status] += 1


async def flushed(stack: Stack, canvas_id: str) -> None:
    """Wait until the view buffer holds nothing more for this canvas: two equal reads a flush apart."""
    last = -1

    async def steady() -> bool:
        nonlocal last
        now = await views_in_db(stack, canvas_id)
        settled, last = now == last, now
        await asyncio.sleep(0.5)
        return settled

    await eventually(steady, within=SETTLES_WITHIN, interval=0.1)


@asynccontextmanager
async def reading(http: Client, compose: Stack) -> AsyncIterator[tuple[str, Counter[int]]]:
    """30 readers of a new canvas through the gateway while the block runs: (its id, the statuses
    they saw so far). The readers stop, and are awaited, when the block ends."""
    user = await member(http, compose)
    canvas_id = await create(user)
    assert canvas_id
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()
    readers = [asyncio.create_task(reads(user, canvas_id, stop, statuses)) for _ in range(30)]
    try:
        yield canvas_id, statuses
    finally:
        stop.set()
        await asyncio.gather(*readers)


async def a_canvas_worker(compose: Stack, statuses: Counter[int]) -> int:
    """A canvas worker to stop, once both workers serve (a worker stopped by an earlier test is
    replaced only when uvicorn's supervisor notices, seconds later: stopping the other one then would
    leave none) and 200 more reads have been answered."""
    supervisor = compose.canvas.proc.pid  # type: ignore[union-attr]
    await eventually(partial(_both_serving, compose, supervisor), within=SETTLES_WITHIN)
    await eventually(partial(_at_least, statuses, statuses[200] + 200), within=SETTLES_WITHIN)
    return workers_of(supervisor)[0]


async def test_views_stay_exact_when_a_canvas_worker_is_killed_under_concurrent_reads(
    http: Client, compose: Stack
) -> None:
    """30 readers, one canvas worker SIGKILLed: every read answered 200 is counted, none twice. (A
    read the dying worker counted but could not answer is a 502 the client saw; it may count.)"""
    async with reading(http, compose) as (canvas_id, statuses):
        os.kill(await a_canvas_worker(compose, statuses), signal.SIGKILL)
        await eventually(partial(_at_least, statuses, statuses[200] + 200), within=SETTLES_WITHIN)
    await flushed(compose, canvas_id)
    failed = sum(n for status, n in statuses.items() if status != 200)
    assert set(statuses) <= {200, 502, 503, 504}, statuses
    views = await views_in_db(compose, canvas_id)
    assert statuses[200] <= views <= statuses[200] + failed, (views, statuses)


async def test_a_canvas_worker_stopped_gracefully_under_reads_fails_no_request(
    http: Client, compose: Stack
) -> None:
    """30 readers, a canvas worker SIGTERMed three times over (as when a replica is stopped or
    rolled): not one read fails, and every read is counted once. The stopping worker keeps its
    connections open until each is answered with `Connection: close` or reaches its keep-alive
    deadline (shared/server.py); uvicorn closed idle ones at once, under requests the gateway had
    just written on them, which became 502s (2 in ~17,000 reads, found by hand on compose)."""
    supervisor = compose.canvas.proc.pid  # type: ignore[union-attr]
    async with reading(http, compose) as (canvas_id, statuses):
        for _ in range(3):
            victim = await a_canvas_worker(compose, statuses)
            os.kill(victim, signal.SIGTERM)
            # uvicorn's supervisor starts a new worker once the stopped one has exited
            await eventually(partial(_replaced, supervisor, victim), within=SETTLES_WITHIN)
        await eventually(partial(_at_least, statuses, statuses[200] + 200), within=SETTLES_WITHIN)
    await flushed(compose, canvas_id)
    assert set(statuses) == {200}, statuses
    assert await views_in_db(compose, canvas_id) == statuses[200]


async def _replaced(supervisor: int, worker: int) -> bool:
    workers = workers_of(supervisor)
    return worker not in workers and len(workers) == 2


async def _both_serving(stack: Stack, supervisor: int) -> bool:
    """Two workers, and every worker the canvas process started has finished its start-up (uvicorn
    logs "Started server process [pid]" before it, "Application startup complete." after it)."""
    log = stack.canvas.log_path.read_text(errors="replace")
    workers = workers_of(supervisor)
    started = log.count("Started server process [")
    return (
        len(workers) == 2
        and all(f"Started server process [{pid}]" in log for pid in workers)
        and log.count("Application startup complete.") >= started
    )


async def _at_least(statuses: Counter[int], n: int) -> bool:
    return statuses[200] >= n


async def test_sigterm_drains_flushes_and_exits_within_the_grace_period(http: Client, compose: Stack) -> None:
    user = await member(http, compose)
    canvas_id = await create(user)
    assert canvas_id
    for _ in range(20):
        assert (await user.call("GET", f"/api/canvases/{canvas_id}")).status == 200
    code = compose.canvas.stop(timeout=30.0)  # compose's stop_grace_period; SIGKILL after it
    try:
        assert code == 0, f"exit {code}: not a clean exit within 30 s\n{compose.canvas.tail()}"
        assert await views_in_db(compose, canvas_id) == 20  # the final flush, or any worker's before
    finally:
        compose.ensure_running()


@needs_postgres
async def test_a_flush_whose_connection_is_killed_heals_within_seconds(http: Client, compose: Stack) -> None:
    user = await member(http, compose)
    canvas_id = await create(user)
    assert canvas_id
    admin = await asyncpg.connect(compose.env["CANVAS_DATABASE_URL"])
    try:
        lock = admin.transaction()
        await lock.start()
        await admin.execute("SELECT id FROM canvas WHERE id = $1 FOR UPDATE", uuid.UUID(canvas_id))
        try:
            for _ in range(10):
                assert (await user.call("GET", f"/api/canvases/{canvas_id}")).status == 200
            for pid in await _blocked(admin, "UPDATE"):
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await lock.rollback()
        for _ in range(10):
            assert (await user.call("GET", f"/api/canvases/{canvas_id}")).status == 200

        async def all_counted() -> bool:
            return await views_in_db(compose, canvas_id) == 20

        await eventually(all_counted, within=RECOVERS_WITHIN)
    finally:
        await admin.close()
    await _ready(http, compose)


@needs_postgres
async def test_a_cascade_whose_connection_is_killed_heals_within_seconds(
    http: Client, compose: Stack
) -> None:
    user = await member(http, compose)
    first = await create(user)
    assert first
    for _ in range(4):
        await create(user)
    admin = await asyncpg.connect(compose.env["CANVAS_DATABASE_URL"])
    try:
        lock = admin.transaction()
        await lock.start()
        await admin.execute("SELECT id FROM canvas WHERE id = $1 FOR UPDATE", uuid.UUID(first))
        try:
            reply = await user.call("DELETE", "/api/users/me", json={"password": PASSWORD})
            assert reply.status == 204
            DELETED_OWNERS.add(user.id)
            for pid in await _blocked(admin, "SELECT"):
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await lock.rollback()
        await eventually(lambda: canvases_gone(compose, user.id), within=RECOVERS_WITHIN)
    finally:
        await admin.close()
    await _ready(http, compose)


@needs_postgres
async def test_a_database_refusing_connections_is_503_then_heals(http: Client, compose: Stack) -> None:
    user = await member(http, compose)
    canvas_id = await create(user)
    assert canvas_id
    name = compose.env["CANVAS_DATABASE_URL"].rsplit("/", 1)[1]
    admin = await asyncpg.connect(compose.env["CANVAS_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres")
    log = compose.canvas.log_path
    log_start = log.stat().st_size
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        answers = [await user.call("GET", "/api/users/me/canvases") for _ in range(10)]
        assert {a.status for a in answers} == {503}, [a.status for a in answers]
        assert all(a.headers["Content-Type"] == "application/problem+json" for a in answers)
        assert all(int(a.headers["Retry-After"]) >= 1 for a in answers)
        assert await create(user) is None  # refused, so not acknowledged
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    outage = log.read_bytes()[log_start:].decode(errors="replace")
    assert "unhandled_error" not in outage
    # No traceback for a request; asyncpg's own pool keeper logs one per reconnect attempt it makes.
    assert outage.count("Traceback") == outage.count("Failed to restore the pool connection floor")
    assert outage.count("dependency_unavailable") >= 10  # one line per refused request
    reply = await until_not_503(
        lambda: user.call("GET", "/api/users/me/canvases"), tries=int(RECOVERS_WITHIN * 10)
    )
    assert reply.status == 200
    assert await create(user)
    await _ready(http, compose)
    # The other compose health check reads /ready: it is 200 again, on both workers.


@needs_postgres
async def test_revocations_survive_a_redis_restart_from_its_append_only_file(
    http: Client, compose: Stack
) -> None:
    """A logout answered 204 stays effective after Redis restarts from its AOF; one tried while Redis
    is down answers 503 and changes nothing (the token still works), and goes through afterwards."""
    early, late, bystander = [await member(http, compose) for _ in range(3)]
    for user in (early, late, bystander):
        assert (await user.call("GET", "/api/users/me")).status == 200  # cached by the gateway
    assert (await early.call("POST", "/api/auth/logout")).status == 204
    await asyncio.sleep(1.5)  # appendfsync everysec: the purge is on disk (a crash may lose 1 s)
    compose.redis.stop()
    try:
        assert (await late.call("POST", "/api/auth/logout")).status == 503
        assert (await early.call("GET", "/api/users/me")).status == 401
        assert (await late.call("GET", "/api/users/me")).status == 200  # the auth service vouches
    finally:
        compose.redis.start()
    for user, expected in ((early, 401), (late, 200), (bystander, 200)):
        reply = await until_not_503(lambda u=user: u.call("GET", "/api/users/me"))  # type: ignore[misc]
        assert reply.status == expected, (user.email, reply.status)
    assert (await until_not_503(lambda: late.call("POST", "/api/auth/logout"))).status == 204
    assert (await late.call("GET", "/api/users/me")).status == 401
    assert (await early.call("GET", "/api/users/me")).status == 401
    await _ready(http, compose)


async def test_views_stay_exact_across_a_redis_restart_under_load(http: Client, compose: Stack) -> None:
    """20 readers while Redis stops and restarts from its AOF: reads during the outage are 503 (a
    view that cannot be counted is not served), every read answered 200 is counted, none twice, and
    reads are 200 again within seconds with no process restarted."""
    user = await member(http, compose)
    canvas_id = await create(user)
    assert canvas_id
    statuses: Counter[int] = Counter()
    stop = asyncio.Event()
    readers = [asyncio.create_task(reads(user, canvas_id, stop, statuses)) for _ in range(20)]
    try:
        await eventually(lambda: _at_least(statuses, 100), within=SETTLES_WITHIN)
        compose.redis.stop()
        try:
            await asyncio.sleep(1.0)
        finally:
            compose.redis.start()
        seen = statuses[200]
        await eventually(lambda: _at_least(statuses, seen + 100), within=RECOVERS_WITHIN)
    finally:
        stop.set()
        await asyncio.gather(*readers)
    assert set(statuses) <= {200, 503}, statuses
    await flushed(compose, canvas_id)
    views = await views_in_db(compose, canvas_id)
    # Each of the 20 readers had at most one read in flight when Redis stopped: counted or not, its
    # answer was a 503. Every other read was counted exactly when it was answered 200.
    assert statuses[200] <= views <= statuses[200] + 20, (views, statuses)
    await _ready(http, compose)


async def test_the_ledger_no_acknowledged_write_lost_no_orphan(compose: Stack) -> None:
    """Runs last in this module: every acknowledged create is in the canvas database (unless its
    owner was deleted), and no canvas belongs to an owner the auth database does not know."""
    assert LEDGER
    rows = await compose.canvas_db.fetch("SELECT CAST(id AS VARCHAR(36)) AS id FROM canvas")
    present = {row["id"] for row in rows}
    lost = [cid for cid, owner in LEDGER.items() if owner not in DELETED_OWNERS and cid not in present]
    assert lost == []

    async def no_orphans() -> bool:
        return not (await owners(compose) - await users(compose))

    await eventually(no_orphans, within=SETTLES_WITHIN)


async def _blocked(admin: asyncpg.Connection, statement: str) -> list[int]:
    """Backends of the canvas service waiting on a row lock while running `statement`."""
    pids: list[int] = []

    async def found() -> bool:
        await admin.execute("SELECT pg_stat_clear_snapshot()")
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE $1"
            " AND datname = current_database() AND pid <> pg_backend_pid()",
            statement + "%",
        )
        pids[:] = [row["pid"] for row in rows]
        return bool(pids)

    await eventually(found, within=SETTLES_WITHIN)
    return pids


async def _ready(http: Client, stack: Stack) -> None:
    """Both canvas workers answer /ready 200 (a few calls reach both) within RECOVERS_WITHIN."""

    async def ready() -> bool:
        replies = [await http("GET", f"{stack.canvas_url}/ready") for _ in range(6)]
        return all(r.status == 200 for r in replies)

    await eventually(ready, within=RECOVERS_WITHIN + 5, interval=0.2)
