"""Events between services: plain structs, carried as JSON in one field of a Redis Stream entry."""

from __future__ import annotations

from datetime import datetime

import msgspec
from redis.asyncio import Redis

USER_EVENTS_STREAM = "user-events"
DEAD_LETTER_STREAM = "user-events:dead"
STREAM_MAXLEN = 100_000  # approximate trim; the reconciliation sweep covers anything trimmed


class UserDeleted(msgspec.Struct, tag="user.deleted", tag_field="type", rename="camel", frozen=True):
    event_id: str
    user_id: str
    occurred_at: datetime


Event = UserDeleted  # a union once there is more than one event type

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    """Raises msgspec.DecodeError / ValidationError on a malformed event."""
    return _decoder.decode(data)


async def publish(redis: Redis, event: Event, stream: str = USER_EVENTS_STREAM) -> str:
    """XADD the event; returns the stream entry id."""
    entry_id = await redis.xadd(
        stream, {"event": encode_event(event)}, maxlen=STREAM_MAXLEN, approximate=True
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
