"""The transactional outbox: an event is written in the transaction of the change it announces,
and the relay (services.auth.relay) publishes it to the Redis Stream afterwards."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.auth.tables import Outbox
from shared.events import Event, decode_event, encode_event


async def add(event: Event, now: datetime) -> None:
    """Call inside the transaction that makes the change the event announces."""
    await Outbox.insert(
        Outbox(
            event_type=event.__struct_config__.tag,
            payload=encode_event(event).decode(),
            created_at=now,
        )
    ).run()


async def has_unsent() -> bool:
    return bool(await Outbox.exists().where(Outbox.sent_at.is_null()).run())


async def claim_unsent(limit: int) -> list[tuple[int, Event]]:
    """The oldest unsent events; call inside a transaction.

    On PostgreSQL the rows stay locked until the transaction ends and concurrent relays skip them
    (FOR UPDATE SKIP LOCKED), so two relays never send the same row. SQLite has no row locks: its
    write transactions (BEGIN IMMEDIATE) serialise whole relays instead, with the same effect.
    """
    query = (
        Outbox.select(Outbox.id, Outbox.payload)
        .where(Outbox.sent_at.is_null())
        .order_by(Outbox.id)
        .limit(limit)
    )
    if Outbox._meta.db.engine_type != "sqlite":
        query = query.lock_rows("UPDATE", skip_locked=True)
    rows: list[dict[str, Any]] = await query.run()
    return [(row["id"], decode_event(row["payload"])) for row in rows]


async def mark_sent(ids: list[int], now: datetime) -> None:
    await Outbox.update({Outbox.sent_at: now}).where(Outbox.id.is_in(ids)).run()


async def delete_sent_before(before: datetime, limit: int) -> int:
    """Delete up to `limit` of the rows sent before `before`, oldest first, in one statement.

    Unsent rows (`sent_at` null) never match. Returns how many rows went.
    """
    oldest = Outbox.select(Outbox.id).where(Outbox.sent_at < before).order_by(Outbox.sent_at).limit(limit)
    deleted = await Outbox.delete().where(Outbox.id.is_in(oldest)).returning(Outbox.id).run()
    return len(deleted)
