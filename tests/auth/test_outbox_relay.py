"""The outbox and its relay: one event per deletion, published once Redis is reachable, never twice."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from devtools.processes import Process
from devtools.redis_server import RedisServer
from services.auth import outbox, relay
from services.auth.relay import relay_once
from services.auth.tables import Outbox
from shared.events import USER_EVENTS_STREAM, UserDeleted, decode_event, encode_event
from shared.timeutil import utcnow
from tests.auth.support import PASSWORD, Account, Api


@pytest.fixture
async def relay_redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=5, socket_connect_timeout=2)
    yield client
    await client.aclose()


async def published(redis: aioredis.Redis) -> list[UserDeleted]:
    """The well-formed events on the stream: canvas tests share it and put malformed ones there."""
    events = []
    for _, fields in await redis.xrange(USER_EVENTS_STREAM):
        with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
            events.append(decode_event(fields[b"event"]))
    return events


async def unsent_for(user_id: str) -> int:
    rows = await Outbox.select(Outbox.payload).where(Outbox.sent_at.is_null()).run()
    return sum(decode_event(row["payload"]).user_id == user_id for row in rows)


async def drain(redis: aioredis.Redis, batch_size: int = 100) -> int:
    total = 0
    while sent := await relay_once(redis, batch_size):
        total += sent
    return total


async def outbox_row(*, created: datetime, sent: datetime | None) -> int:
    """A row written straight to the table, with the times a test needs."""
    event = UserDeleted(event_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), occurred_at=created)
    row = Outbox(event_type="user.deleted", payload=encode_event(event).decode(), created_at=created)
    row.sent_at = sent
    [inserted] = await Outbox.insert(row).returning(Outbox.id).run()
    return int(inserted["id"])


async def still_there(ids: list[int]) -> list[int]:
    rows = await Outbox.select(Outbox.id).where(Outbox.id.is_in(ids)).order_by(Outbox.id).run()
    return [row["id"] for row in rows]


async def test_deletion_waits_in_the_outbox_while_redis_is_down(
    api: Api, account: Account, redis_server: RedisServer, relay_redis: aioredis.Redis
) -> None:
    # Committed while Redis answered (a deletion whose cache purge fails is refused: 503, see
    # tests/auth/test_sessions.py), then Redis goes down before the relay publishes it.
    resp = await api.call("DELETE", "/api/users/me", session=account, json={"password": PASSWORD})
    assert resp.status_code == 204
    redis_server.stop()
    try:
        with pytest.raises(RedisError):
            await relay_once(relay_redis, 100)
        assert await unsent_for(account.uid) == 1
    finally:
        redis_server.start()
    assert await drain(relay_redis) >= 1
    assert await unsent_for(account.uid) == 0
    assert await drain(relay_redis) == 0
    mine = [e for e in await published(relay_redis) if e.user_id == account.uid]
    assert len(mine) == 1


async def test_two_relays_never_send_a_row_twice(relay_redis: aioredis.Redis) -> None:
    events = [
        UserDeleted(event_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), occurred_at=utcnow())
        for _ in range(30)
    ]
    for event in events:
        await outbox.add(event, utcnow())
    await asyncio.gather(drain(relay_redis, batch_size=4), drain(relay_redis, batch_size=4))
    sent_ids = [e.event_id for e in await published(relay_redis)]
    assert [sent_ids.count(e.event_id) for e in events] == [1] * 30
    assert not await outbox.has_unsent()


async def test_the_relay_process_publishes_and_stops_on_sigterm(
    relay_redis: aioredis.Redis, tmp_path: Path
) -> None:
    event = UserDeleted(event_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()), occurred_at=utcnow())
    await outbox.add(event, utcnow())
    long_sent = await outbox_row(created=utcnow() - timedelta(days=30), sent=utcnow() - timedelta(days=8))
    just_sent = await outbox_row(created=utcnow(), sent=utcnow())
    process = Process("relay", [sys.executable, "-m", "services.auth.relay"], {}, tmp_path / "relay.log")
    process.start()
    try:
        for _ in range(300):
            if any(e.event_id == event.event_id for e in await published(relay_redis)):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"the relay did not publish the event:\n{process.tail()}")
    finally:
        code = await asyncio.to_thread(process.stop, 10, signal.SIGTERM)
    assert code == 0, process.tail()
    assert not await outbox.has_unsent()
    # it pruned when it started, before its first batch
    assert await still_there([long_sent, just_sent]) == [just_sent]


async def test_sent_rows_older_than_the_retention_are_pruned_in_batches() -> None:
    now, retention = utcnow(), timedelta(days=7)
    cutoff = now - retention
    # sent long ago, oldest last; an unsent row as old as any; rows sent within the retention
    old = [
        await outbox_row(created=cutoff - timedelta(days=400), sent=cutoff - timedelta(days=300 + i))
        for i in range(5)
    ]
    unsent = await outbox_row(created=cutoff - timedelta(days=400), sent=None)
    recent = [
        await outbox_row(created=cutoff - timedelta(days=1), sent=cutoff + timedelta(minutes=1)),
        await outbox_row(created=now, sent=now),
    ]
    try:
        assert await outbox.delete_sent_before(cutoff, 2) == 2  # one batch: at most 2 rows, oldest first
        assert await still_there(old) == old[:3]
        assert await relay.prune(now, retention=retention, batch=2) == 3
        assert await still_there([*old, unsent, *recent]) == [unsent, *recent]
        assert await relay.prune(now, retention=retention, batch=2) == 0
    finally:
        await Outbox.delete().where(Outbox.id == unsent).run()  # other tests count on an empty outbox
