"""services/canvas/streams.py: delivery, acks, retries, reclaim from a dead consumer, dead letters."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from devtools.redis_server import RedisServer
from services.canvas import streams
from services.canvas.streams import Fields, PoisonMessage, StreamConsumer
from tests.support.waiting import eventually


class Recorder:
    """A handler that records what it saw and fails as told: `fail` = failures before success."""

    def __init__(self, fail: dict[bytes, int] | None = None) -> None:
        self.calls: Counter[bytes] = Counter()
        self.handled: list[bytes] = []
        self.fail = fail or {}

    async def __call__(self, entry_id: str, fields: Fields) -> None:
        body = fields[b"body"]
        self.calls[body] += 1
        if body.startswith(b"poison"):
            raise PoisonMessage("cannot parse")
        if self.calls[body] <= self.fail.get(body, 0):
            raise RuntimeError(f"failure {self.calls[body]}")
        self.handled.append(body)


@pytest.fixture
async def stream(redis: Redis) -> AsyncIterator[str]:
    name = f"test-stream-{secrets.token_hex(4)}"
    yield name
    await redis.delete(name, f"{name}:dead")


def consumer(
    redis: Redis, stream: str, handler: Recorder, name: str = "c1", **options: float
) -> StreamConsumer:
    """A consumer that leaves a failed entry pending at once (`retry_within=0`) unless told otherwise."""
    return StreamConsumer(
        redis=redis,
        stream=stream,
        group="g",
        name=name,
        handler=handler,
        dead_letter_stream=f"{stream}:dead",
        **{"block_ms": 10, "claim_idle_ms": 60_000, "max_deliveries": 3, "retry_within": 0, **options},  # type: ignore[arg-type]
    )


async def publish(redis: Redis, stream: str, *bodies: bytes) -> list[str]:
    return [(await redis.xadd(stream, {"body": body})).decode() for body in bodies]


async def pending(redis: Redis, stream: str) -> int:
    return int((await redis.xpending(stream, "g"))["pending"])


async def dead(redis: Redis, stream: str) -> list[tuple[str, Fields]]:
    return await streams.dead_letters(redis, f"{stream}:dead")


async def test_entries_are_handled_in_order_and_acknowledged(redis: Redis, stream: str) -> None:
    handler = Recorder()
    c = consumer(redis, stream, handler)
    await c.ensure_group()
    await c.ensure_group()  # idempotent
    await publish(redis, stream, b"a", b"b", b"c")
    assert await c.poll() == 3
    assert handler.handled == [b"a", b"b", b"c"]
    assert await pending(redis, stream) == 0
    assert await c.poll() == 0


async def test_poison_is_dead_lettered_at_once_and_later_entries_flow(redis: Redis, stream: str) -> None:
    handler = Recorder()
    c = consumer(redis, stream, handler)
    await c.ensure_group()
    ids = await publish(redis, stream, b"a", b"poison-1", b"b")
    await c.poll()
    assert handler.handled == [b"a", b"b"]
    assert handler.calls[b"poison-1"] == 1
    letters = await dead(redis, stream)
    assert len(letters) == 1
    fields = letters[0][1]
    assert fields[b"body"] == b"poison-1"
    assert fields[streams.SOURCE_ID] == ids[1].encode()
    assert fields[streams.SOURCE_STREAM] == stream.encode()
    assert b"cannot parse" in fields[streams.ERROR]
    assert await pending(redis, stream) == 0


async def test_a_failing_entry_is_retried_then_dead_lettered_after_n_deliveries(
    redis: Redis, stream: str
) -> None:
    handler = Recorder(fail={b"flaky": 2, b"broken": 99})
    c = consumer(redis, stream, handler, claim_idle_ms=0)  # retry at every poll
    await c.ensure_group()
    await publish(redis, stream, b"flaky", b"broken", b"fine")
    for _ in range(5):
        await c.poll()
    assert handler.handled == [b"fine", b"flaky"]
    assert handler.calls == Counter({b"flaky": 3, b"broken": 3, b"fine": 1})
    [(_, fields)] = await dead(redis, stream)
    assert (fields[b"body"], fields[streams.DELIVERIES]) == (b"broken", b"3")
    assert await pending(redis, stream) == 0


async def test_an_entry_left_pending_by_a_dead_consumer_is_reclaimed(redis: Redis, stream: str) -> None:
    handler = Recorder()
    survivor = consumer(redis, stream, handler, name="survivor", claim_idle_ms=100)
    await survivor.ensure_group()
    await publish(redis, stream, b"orphan")
    # Another consumer read it and died before acknowledging.
    await redis.xreadgroup("g", "crashed", {stream: ">"}, count=1)
    assert await survivor.poll() == 0  # not idle long enough yet: the owner may still be working

    async def reclaimed() -> bool:
        await survivor.poll()
        return handler.handled == [b"orphan"]

    await eventually(reclaimed)
    assert await pending(redis, stream) == 0


async def test_an_entry_that_killed_its_consumers_too_often_is_not_handled_again(
    redis: Redis, stream: str
) -> None:
    handler = Recorder()
    c = consumer(redis, stream, handler, claim_idle_ms=0, max_deliveries=2)
    await c.ensure_group()
    [entry_id] = await publish(redis, stream, b"killer")
    await redis.xreadgroup("g", "crashed-1", {stream: ">"}, count=1)
    await redis.xclaim(stream, "g", "crashed-2", 0, [entry_id])  # its second delivery, also a crash
    await c.poll()
    assert handler.calls[b"killer"] == 0
    [(_, fields)] = await dead(redis, stream)
    assert fields[streams.DELIVERIES] == b"3"
    assert await pending(redis, stream) == 0


async def test_a_transient_failure_is_retried_at_once_not_after_the_reclaim(
    redis: Redis, stream: str
) -> None:
    handler = Recorder(fail={b"flaky": 3})
    c = consumer(redis, stream, handler, retry_within=10.0)
    await c.ensure_group()
    await publish(redis, stream, b"flaky")
    assert await c.poll() == 1
    assert handler.handled == [b"flaky"]  # the fourth try, in the same delivery
    assert await pending(redis, stream) == 0
    assert await dead(redis, stream) == []


async def test_replayed_dead_letters_return_to_their_stream(redis: Redis, stream: str) -> None:
    handler = Recorder(fail={b"late": 1})
    c = consumer(redis, stream, handler, max_deliveries=1)
    await c.ensure_group()
    await publish(redis, stream, b"late")
    await c.poll()
    [(dead_id, _)] = await dead(redis, stream)
    replayed = await streams.replay_dead_letters(redis, f"{stream}:dead", [dead_id])
    assert list(replayed) == [dead_id]
    [(_, fields)] = await redis.xrange(stream, replayed[dead_id], replayed[dead_id])
    assert fields == {b"body": b"late"}  # the dead-letter bookkeeping is stripped
    await c.poll()
    assert handler.handled == [b"late"]
    assert await dead(redis, stream) == []


async def test_consumers_left_behind_by_dead_processes_are_pruned(redis: Redis, stream: str) -> None:
    c = consumer(redis, stream, Recorder(), name="current", prune_idle_ms=0)
    await c.ensure_group()
    await publish(redis, stream, b"held")
    await redis.xreadgroup("g", "holding", {stream: ">"}, count=1)
    await redis.xgroup_createconsumer(stream, "g", "gone")  # read nothing, then died
    assert await c.prune_idle_consumers() == ["gone"]
    names = {info["name"] for info in await redis.xinfo_consumers(stream, "g")}
    assert names == {b"holding"}  # the one still holding an entry stays, to be reclaimed from


@pytest.mark.resilience
async def test_the_consumer_survives_a_redis_outage_and_a_lost_group(
    redis: Redis, stream: str, redis_server: RedisServer
) -> None:
    handler = Recorder()
    c = consumer(redis, stream, handler, max_backoff=1)
    stop = asyncio.Event()
    runner = asyncio.create_task(c.run(stop))
    try:
        await publish(redis, stream, b"before")
        await eventually(lambda: _done(handler, b"before"))
        redis_server.stop()
        await asyncio.sleep(0.3)  # the consumer meets the outage and backs off
        assert not runner.done()
        redis_server.start()
        await publish(redis, stream, b"after-outage")
        await eventually(lambda: _done(handler, b"after-outage"))
        await redis.delete(stream)  # Redis lost the stream and its group
        await publish(redis, stream, b"after-loss")
        await eventually(lambda: _done(handler, b"after-loss"))
    finally:
        stop.set()
        await asyncio.wait_for(runner, 5)


async def _done(handler: Recorder, body: bytes) -> bool:
    return body in handler.handled
