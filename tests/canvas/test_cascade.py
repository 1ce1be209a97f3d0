"""The user-deletion cascade: events delete a user's canvases once, poison goes to the dead letters."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
import pytest
from redis.asyncio import Redis

from services.canvas import cascade
from services.canvas.app import create_app
from services.canvas.background import user_events_consumer
from services.canvas.read_cache import ReadCache
from services.canvas.streams import StreamConsumer, dead_letters
from services.canvas.tables import Canvas, CanvasTag, DeletedUser, ProcessedEvent
from services.canvas.view_counter import ViewCounter
from shared.events import USER_EVENTS_STREAM, UserDeleted, publish
from tests.canvas.support import Caller, canvas_settings, insert_canvases, running
from tests.support.problems import assert_problem
from tests.support.waiting import eventually


def user_deleted(user_id: str, event_id: str | None = None) -> UserDeleted:
    return UserDeleted(event_id=event_id or str(uuid.uuid4()), user_id=user_id, occurred_at=datetime.now(UTC))


@pytest.fixture
async def stream(redis: Redis) -> AsyncIterator[str]:
    name = f"test-user-events-{secrets.token_hex(4)}"
    yield name
    await redis.delete(name, f"{name}:dead")


@pytest.fixture
async def events(redis: Redis, stream: str, cache: ReadCache) -> StreamConsumer:
    """The canvas service's consumer, on a stream of this test's own."""
    consumer = StreamConsumer(
        redis=redis,
        stream=stream,
        group=cascade.CONSUMER_GROUP,
        name="test-consumer",
        handler=cascade.event_handler(cache, batch_size=3),
        dead_letter_stream=f"{stream}:dead",
        block_ms=10,
        claim_idle_ms=100,
    )
    await consumer.ensure_group()
    return consumer


async def owned(user_id: str) -> int:
    return await Canvas.count().where(Canvas.user_id == uuid.UUID(user_id)).run()


async def test_a_user_deleted_event_deletes_their_canvases_and_refuses_new_ones(
    alice: Caller, bob: Caller, events: StreamConsumer, stream: str, redis: Redis
) -> None:
    mine = [await alice.create(isPublic=i % 2 == 0, tags=["x", "y"]) for i in range(7)]
    theirs = await bob.create(isPublic=True, tags=["x"])
    event = user_deleted(alice.uid)
    await publish(redis, event, stream)
    assert await events.poll() == 1
    assert await owned(alice.uid) == 0
    for canvas in mine:
        assert_problem(await alice.get(canvas["id"]), 404)
    assert (await alice.request("GET", "/api/users/me/canvases")).json()["items"] == []
    assert (
        await CanvasTag.count().where(CanvasTag.canvas.is_in([uuid.UUID(c["id"]) for c in mine])).run() == 0
    )
    assert_problem(
        await alice.request("POST", "/api/canvases", json={"title": "t", "type": "t", "code": ""}), 403
    )
    assert (await bob.get(theirs["id"])).status_code == 200
    assert await ProcessedEvent.exists().where(ProcessedEvent.event_id == event.event_id).run()
    assert await DeletedUser.exists().where(DeletedUser.user_id == uuid.UUID(alice.uid)).run()
    assert int((await redis.xpending(stream, cascade.CONSUMER_GROUP))["pending"]) == 0


async def test_a_redelivered_event_changes_nothing(
    alice: Caller, events: StreamConsumer, stream: str, redis: Redis, cache: ReadCache
) -> None:
    await alice.create()
    event = user_deleted(alice.uid)
    await publish(redis, event, stream)
    await events.poll()
    # A canvas that appeared afterwards (it cannot be created through the API any more).
    await insert_canvases(uuid.UUID(alice.uid), 1)
    await publish(redis, event, stream)  # the same event again
    assert await events.poll() == 1
    assert await owned(alice.uid) == 1  # the event id was recorded: it is not applied twice
    done = await cascade.delete_user(
        uuid.UUID(alice.uid), cache=cache, batch_size=10, event_id=event.event_id
    )
    assert done.already_done
    assert await dead_letters(redis, f"{stream}:dead") == []


async def test_malformed_events_go_to_the_dead_letters_and_later_events_flow(
    alice: Caller, events: StreamConsumer, stream: str, redis: Redis
) -> None:
    await alice.create()
    valid = {
        "type": "user.deleted",
        "eventId": "e",
        "userId": str(uuid.uuid4()),
        "occurredAt": "2020-01-01T00:00:00Z",
    }
    poison = [
        {b"event": b"not json"},
        {b"something": b"else"},
        {b"event": b'{"type": "user.deleted", "eventId": "e1"}'},
        {b"event": msgspec.json.encode({**valid, "type": "user.renamed"})},
        {b"event": msgspec.json.encode({**valid, "userId": "not-a-uuid"})},
    ]
    for fields in poison:
        await redis.xadd(stream, fields)  # type: ignore[arg-type]
    await publish(redis, user_deleted(alice.uid), stream)
    await events.poll()
    assert await owned(alice.uid) == 0
    letters = await dead_letters(redis, f"{stream}:dead")
    assert [{k: v for k, v in f.items() if not k.startswith(b"dead-letter:")} for _, f in letters] == poison
    assert int((await redis.xpending(stream, cascade.CONSUMER_GROUP))["pending"]) == 0


async def test_an_event_pending_on_a_dead_consumer_is_reclaimed(
    alice: Caller, events: StreamConsumer, stream: str, redis: Redis
) -> None:
    for _ in range(4):
        await alice.create()
    await publish(redis, user_deleted(alice.uid), stream)
    # A canvas process read the event and died before it could delete anything.
    await redis.xreadgroup(cascade.CONSUMER_GROUP, "dead-process", {stream: ">"}, count=1)
    assert await owned(alice.uid) == 4

    async def reclaimed() -> bool:
        await events.poll()
        return await owned(alice.uid) == 0

    await eventually(reclaimed)
    assert int((await redis.xpending(stream, cascade.CONSUMER_GROUP))["pending"]) == 0


@pytest.mark.slow
async def test_ten_thousand_canvases_are_deleted_in_batches(cache: ReadCache) -> None:
    owner = uuid.uuid4()
    await insert_canvases(owner, 10_000, tags=["t"])
    assert await owned(str(owner)) == 10_000
    done = await cascade.delete_user(owner, cache=cache, batch_size=1000, event_id=str(uuid.uuid4()))
    assert (done.canvases, done.batches) == (10_000, 10)
    assert await owned(str(owner)) == 0


async def test_the_service_consumes_the_user_events_stream(redis: Redis) -> None:
    config = canvas_settings(run_background=True, consumer_block_ms=50, flush_interval=60)
    async with running(create_app(config)) as client:
        alice = Caller(client, str(uuid.uuid4()))
        for _ in range(3):
            await alice.create()
        await publish(redis, user_deleted(alice.uid), USER_EVENTS_STREAM)

        async def deleted() -> bool:
            return await owned(alice.uid) == 0

        await eventually(deleted)
        assert_problem(
            await alice.request("POST", "/api/canvases", json={"title": "t", "type": "t", "code": ""}), 403
        )


async def test_the_consumer_is_wired_to_the_contract_names() -> None:
    consumer = user_events_consumer(
        canvas_settings(), Redis(), ReadCache(ViewCounter(Redis()), ttl=60, max_bytes=1)
    )
    assert (consumer.stream, consumer.group, consumer.dead_letter_stream) == (
        "user-events",
        "canvas",
        "user-events:dead",
    )
