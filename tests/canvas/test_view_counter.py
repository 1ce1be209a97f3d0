"""Exact view counts: concurrency, the flush hand-off, crashes around it, concurrent flushers, restarts."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from redis.asyncio import Redis

from devtools.redis_server import RedisServer
from services.canvas import view_counter as views_module
from services.canvas.app import create_app
from services.canvas.view_counter import ViewCounter, apply_batch
from tests.asgi import ready_status
from tests.canvas.support import Caller, canvas_settings, read_views, running, stored_views
from tests.support.problems import assert_problem
from tests.support.waiting import eventually


async def pending_batches(redis: Redis) -> set[bytes]:
    return await redis.smembers(views_module.PENDING_KEY)  # type: ignore[no-any-return]


async def test_200_concurrent_reads_are_counted_exactly(
    alice: Caller, anon: Caller, views: ViewCounter
) -> None:
    canvas = await alice.create(isPublic=True)
    seen = await asyncio.gather(*(read_views(anon, canvas["id"]) for _ in range(200)))
    assert sorted(seen) == list(range(1, 201))  # each read saw itself and every read before it
    await views.flush()
    assert await stored_views(canvas["id"]) == 200
    assert await read_views(anon, canvas["id"]) == 201


async def test_reads_racing_flushes_stay_exact(alice: Caller, anon: Caller, views: ViewCounter) -> None:
    canvas = await alice.create(isPublic=True)
    for wave in range(1, 5):  # 4 waves of 50 concurrent reads, each racing a flush
        *seen, _ = await asyncio.gather(*(read_views(anon, canvas["id"]) for _ in range(50)), views.flush())
        # A read counts itself and every read before it, and no read that has not happened yet.
        assert all(50 * (wave - 1) < n <= 50 * wave for n in seen)
        assert max(seen) == 50 * wave
    await views.flush()
    assert await stored_views(canvas["id"]) == 200


async def test_crash_after_hand_off_before_commit_loses_nothing(
    alice: Caller, anon: Caller, views: ViewCounter, redis: Redis
) -> None:
    canvas = await alice.create(isPublic=True)
    for _ in range(5):
        await read_views(anon, canvas["id"])
    batch = await views.close_open_batch()  # the flusher handed the batch off, then died
    assert batch is not None
    assert batch.encode() in await pending_batches(redis)
    assert await stored_views(canvas["id"]) == 0
    assert await read_views(anon, canvas["id"]) == 6  # the pending batch still counts
    assert await views.flush() >= 6  # the next flush applies the orphaned batch too
    assert await stored_views(canvas["id"]) == 6
    assert batch.encode() not in await pending_batches(redis)


async def test_crash_after_commit_before_cleanup_counts_once(
    alice: Caller, anon: Caller, views: ViewCounter, redis: Redis
) -> None:
    canvas = await alice.create(isPublic=True)
    for _ in range(4):
        await read_views(anon, canvas["id"])
    batch = await views.close_open_batch()
    assert batch is not None
    counts = await redis.hgetall(views_module.BATCH_PREFIX + batch)
    await apply_batch(batch, {k.decode(): int(v) for k, v in counts.items()})  # committed, then died
    assert await stored_views(canvas["id"]) == 4
    assert await read_views(anon, canvas["id"]) == 5  # not 9: the batch is known to be applied
    await views.flush()
    assert await stored_views(canvas["id"]) == 5
    assert batch.encode() not in await pending_batches(redis)


async def test_a_batch_is_applied_once_by_concurrent_flushers(
    alice: Caller, anon: Caller, views: ViewCounter, redis: Redis
) -> None:
    canvas = await alice.create(isPublic=True)
    for _ in range(10):
        await read_views(anon, canvas["id"])
    batch = await views.close_open_batch()
    assert batch is not None
    counts = {canvas["id"]: int(await redis.hget(views_module.BATCH_PREFIX + batch, canvas["id"]))}
    applied = await asyncio.gather(*(apply_batch(batch, counts) for _ in range(3)))
    assert sorted(applied) == [0, 0, 10]
    results = await asyncio.gather(views.flush(), views.flush())
    assert results == [0, 0]
    assert await stored_views(canvas["id"]) == 10


async def test_views_of_a_deleted_canvas_do_not_block_the_flush(
    alice: Caller, anon: Caller, views: ViewCounter, redis: Redis
) -> None:
    gone = await alice.create(isPublic=True)
    kept = await alice.create(isPublic=True)
    for canvas in (gone, kept, gone):
        await read_views(anon, canvas["id"])
    assert (await alice.request("DELETE", f"/api/canvases/{gone['id']}")).status_code == 204
    await views.flush()
    assert await stored_views(kept["id"]) == 1
    assert await pending_batches(redis) == set()


async def test_views_survive_a_restart() -> None:
    config = canvas_settings()
    async with running(create_app(config)) as first:
        alice = Caller(first, str(uuid.uuid4()))
        canvas = await alice.create()
        for _ in range(7):
            await read_views(alice, canvas["id"])
    assert await stored_views(canvas["id"]) == 7  # the graceful shutdown flushed
    async with running(create_app(config)) as second:
        assert await read_views(Caller(second, alice.uid), canvas["id"]) == 8


async def test_the_background_flusher_applies_the_buffer() -> None:
    async with running(create_app(canvas_settings(run_background=True, flush_interval=0.05))) as client:
        alice = Caller(client, str(uuid.uuid4()))
        canvas = await alice.create()
        for _ in range(3):
            await read_views(alice, canvas["id"])

        async def flushed() -> bool:
            return await stored_views(canvas["id"]) == 3

        await eventually(flushed)
        assert await read_views(alice, canvas["id"]) == 4


@pytest.mark.resilience
async def test_without_redis_a_read_is_503_and_counts_nothing_but_changes_work(
    alice: Caller, anon: Caller, client, redis_server: RedisServer
) -> None:
    canvas = await alice.create(isPublic=True)
    assert await read_views(anon, canvas["id"]) == 1
    redis_server.stop()
    try:
        resp = await anon.get(canvas["id"])
        assert_problem(resp, 503)
        assert resp.headers["retry-after"]
        ready = await ready_status(client)  # /ready answers from a check up to 1 s old
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["redis"]
        # A change does not depend on the counter: it is made, and answered with the flushed views.
        patched = await alice.request("PATCH", f"/api/canvases/{canvas['id']}", json={"title": "still works"})
        assert patched.status_code == 200
        assert patched.json()["title"] == "still works"
    finally:
        redis_server.start()
    # The pooled connections died with the server; a read that still meets one is 503 and counts
    # nothing, so the first read that gets through is the second view.
    answers: list[httpx.Response] = []

    async def served() -> bool:
        answers.append(await anon.get(canvas["id"]))
        return answers[-1].status_code == 200

    await eventually(served)
    assert {a.status_code for a in answers[:-1]} <= {503}
    assert answers[-1].json()["views"] == 2
