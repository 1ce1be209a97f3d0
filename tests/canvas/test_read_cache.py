"""The read cache: reads served from Redis stay exact, visible only to whom they may be, and every
change or deletion (through the API, the cascade or the sweep) is seen by the next read."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from litestar import Litestar
from redis.asyncio import Redis

from services.canvas import cascade
from services.canvas.app import create_app
from services.canvas.canvases import _tagged, _visible
from services.canvas.read_cache import DOC_PREFIX, Miss, ReadCache
from services.canvas.tables import Canvas
from services.canvas.view_counter import ViewCounter
from tests.canvas.support import Caller, canvas_settings, read_views, running, stored_views
from tests.support.problems import assert_problem


async def cached(redis: Redis, canvas_id: str) -> bool:
    return bool(await redis.exists(DOC_PREFIX + canvas_id))


async def rename_behind_the_service(canvas_id: str, title: str) -> None:
    await Canvas.update({Canvas.title: title}).where(Canvas.id == uuid.UUID(canvas_id)).run()


async def test_a_read_fills_the_cache_and_the_next_reads_skip_the_database(
    alice: Caller, anon: Caller, redis: Redis
) -> None:
    canvas = await alice.create(isPublic=True, title="first")
    assert not await cached(redis, canvas["id"])
    assert await read_views(anon, canvas["id"]) == 1
    assert await cached(redis, canvas["id"])
    # A write that bypasses the service is not seen until the doc expires: the read is Redis only.
    await rename_behind_the_service(canvas["id"], "behind")
    resp = await anon.get(canvas["id"])
    assert (resp.json()["title"], resp.json()["views"]) == ("first", 2)
    assert {k: v for k, v in resp.json().items() if k != "views"} == {
        k: v for k, v in canvas.items() if k != "views"
    }


async def test_changes_and_deletions_through_the_api_are_seen_at_once(
    alice: Caller, anon: Caller, redis: Redis
) -> None:
    canvas = await alice.create(isPublic=True, title="before")
    assert await read_views(anon, canvas["id"]) == 1
    patched = await alice.request("PATCH", f"/api/canvases/{canvas['id']}", json={"title": "after"})
    assert patched.status_code == 200
    assert not await cached(redis, canvas["id"])
    resp = await anon.get(canvas["id"])
    assert (resp.json()["title"], resp.json()["views"]) == ("after", 2)
    assert await read_views(anon, canvas["id"]) == 3  # cached again, still counting on
    assert (await alice.request("DELETE", f"/api/canvases/{canvas['id']}")).status_code == 204
    assert_problem(await anon.get(canvas["id"]), 404)


async def test_a_cached_private_canvas_stays_hidden_and_uncounted(
    alice: Caller, bob: Caller, anon: Caller, redis: Redis
) -> None:
    canvas = await alice.create(isPublic=False)
    assert await read_views(alice, canvas["id"]) == 1
    assert await cached(redis, canvas["id"])
    for stranger in (bob, anon):
        assert_problem(await stranger.get(canvas["id"]), 404)
    assert await read_views(alice, canvas["id"]) == 2


async def test_the_cascade_drops_the_cached_canvases(
    alice: Caller, anon: Caller, cache: ReadCache, redis: Redis
) -> None:
    shown = [await alice.create(isPublic=True) for _ in range(3)]
    for canvas in shown:
        await read_views(anon, canvas["id"])
    await cascade.delete_user(uuid.UUID(str(alice.uid)), cache=cache, batch_size=2)
    for canvas in shown:
        assert not await cached(redis, canvas["id"])
        assert_problem(await anon.get(canvas["id"]), 404)


async def test_reads_missing_the_cache_together_are_counted_exactly(
    alice: Caller, anon: Caller, views: ViewCounter
) -> None:
    """Many first reads at once: one fills the cache, the others count through the database path,
    and each sees a count of its own. Then waves racing a flush, where (as without the cache, see
    test_view_counter.py) a read counts itself and every read before it and none that has not happened."""
    canvas = await alice.create(isPublic=True)
    first = await asyncio.gather(*(read_views(anon, canvas["id"]) for _ in range(50)))
    assert sorted(first) == list(range(1, 51))
    for wave in range(2, 5):
        *seen, _ = await asyncio.gather(*(read_views(anon, canvas["id"]) for _ in range(50)), views.flush())
        assert all(50 * (wave - 1) < n <= 50 * wave for n in seen)
        assert max(seen) == 50 * wave
    await views.flush()
    assert await stored_views(canvas["id"]) == 200


async def missed_once(alice: Caller, app: Litestar) -> tuple[ReadCache, ViewCounter, dict[str, Any], Miss]:
    """The app's cache and counter, a new public canvas, and the miss of its first lookup."""
    cache: ReadCache = app.state.container.cache
    canvas = await alice.create(isPublic=True)
    miss = await cache.lookup(uuid.UUID(canvas["id"]), None)
    assert isinstance(miss, Miss)
    return cache, app.state.container.views, canvas, miss


async def test_a_fill_is_refused_when_the_canvas_changed_since_the_miss(
    alice: Caller, anon: Caller, app: Litestar, redis: Redis
) -> None:
    cache, views, canvas, miss = await missed_once(alice, app)
    canvas_id = uuid.UUID(canvas["id"])
    await cache.forget([canvas_id])  # a change committed after the miss
    seen = await views.count_view(canvas_id)
    served = _tagged(await _visible(canvas_id, None), seen.totals[canvas["id"]])
    assert not await cache.fill(miss, *served, seen)
    assert not await cached(redis, canvas["id"])
    assert await read_views(anon, canvas["id"]) == 2  # a fresh miss fills it, counts stay exact
    assert await cached(redis, canvas["id"])


async def test_a_fill_is_refused_when_a_flush_moved_counts_since_the_snapshot(
    alice: Caller, anon: Caller, app: Litestar, redis: Redis
) -> None:
    cache, views, canvas, miss = await missed_once(alice, app)
    canvas_id = uuid.UUID(canvas["id"])
    seen = await views.count_view(canvas_id)  # its batch is unapplied in this snapshot
    await views.flush()  # ... then applied and dropped from Redis
    served = _tagged(await _visible(canvas_id, None), seen.totals[canvas["id"]])
    assert not await cache.fill(miss, *served, seen)
    miss = await cache.lookup(canvas_id, None)
    assert isinstance(miss, Miss)
    seen = await views.count_view(canvas_id)
    await views.count_view(canvas_id)  # a read after the snapshot, in the batch it asked about
    assert await cache.fill(miss, *served, seen)
    assert await read_views(anon, canvas["id"]) == 4


async def test_large_canvases_and_a_cache_turned_off_read_from_the_database(
    alice: Caller, anon: Caller, redis: Redis
) -> None:
    big = await alice.create(isPublic=True, code="x" * 70_000)
    assert [await read_views(anon, big["id"]) for _ in range(3)] == [1, 2, 3]
    assert not await cached(redis, big["id"])
    async with running(create_app(canvas_settings(read_cache_ttl=0))) as client:
        reader = Caller(client, None)
        small = await alice.create(isPublic=True)
        assert [await read_views(reader, small["id"]) for _ in range(3)] == [1, 2, 3]
        assert not await cached(redis, small["id"])


async def test_a_cached_canvas_expires_after_its_ttl(alice: Caller, anon: Caller, redis: Redis) -> None:
    canvas = await alice.create(isPublic=True)
    await read_views(anon, canvas["id"])
    ttl = await redis.ttl(DOC_PREFIX + canvas["id"])
    assert 0 < ttl <= canvas_settings().read_cache_ttl


async def test_a_fill_is_refused_when_a_batch_opened_since_the_snapshot(
    alice: Caller, anon: Caller, app: Litestar, redis: Redis
) -> None:
    cache, views, canvas, miss = await missed_once(alice, app)
    canvas_id = uuid.UUID(canvas["id"])
    seen = await views.count_view(canvas_id)
    await views.close_open_batch()
    await views.count_view(canvas_id)  # counted in a batch the snapshot never asked about
    served = _tagged(await _visible(canvas_id, None), seen.totals[canvas["id"]])
    assert not await cache.fill(miss, *served, seen)
    assert await read_views(anon, canvas["id"]) == 3
    assert await read_views(anon, canvas["id"]) == 4


def sample(metrics: str, name: str, result: str) -> float:
    line = f'{name}{{result="{result}"}} '
    return next((float(row.removeprefix(line)) for row in metrics.splitlines() if row.startswith(line)), 0.0)


async def test_hits_misses_and_fills_are_on_the_metrics(
    alice: Caller, bob: Caller, client: httpx.AsyncClient
) -> None:
    lookups, fills = "canvasverse_canvas_read_cache_total", "canvasverse_canvas_read_cache_fills_total"
    before = (await client.get("/metrics")).text
    canvas = await alice.create(isPublic=False)
    for _ in range(3):
        await read_views(alice, canvas["id"])
    assert_problem(await bob.get(canvas["id"]), 404)
    after = (await client.get("/metrics")).text
    changes = {
        (name, result): sample(after, name, result) - sample(before, name, result)
        for name, result in [(lookups, "hit"), (lookups, "miss"), (lookups, "hidden"), (fills, "filled")]
    }
    assert changes == {
        (lookups, "hit"): 2,
        (lookups, "miss"): 1,
        (lookups, "hidden"): 1,
        (fills, "filled"): 1,
    }
