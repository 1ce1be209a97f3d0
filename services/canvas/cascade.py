"""The user-deletion cascade: a deleted user's canvases are deleted, idempotently.

`user.deleted` events arrive on the `user-events` stream (group `canvas`, services/canvas/streams.py does the
delivery, retries and dead letters). The reconciliation sweep (reconcile.py) uses the same deletion
for owners the auth service no longer knows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import msgspec
import structlog

from services.canvas import db
from services.canvas.read_cache import ReadCache
from services.canvas.streams import Fields, Handler, PoisonMessage
from services.canvas.tables import Canvas, DeletedUser, ProcessedEvent
from shared.events import decode_event
from shared.timeutil import utcnow

log = structlog.get_logger()

CONSUMER_GROUP = "canvas"


@dataclass(frozen=True)
class Deletion:
    canvases: int = 0
    batches: int = 0
    already_done: bool = False


async def delete_user(
    user_id: uuid.UUID, *, cache: ReadCache, batch_size: int, event_id: str | None = None
) -> Deletion:
    """Mark the user deleted, then delete their canvases `batch_size` per transaction.

    The mark comes first and commits on its own: from then on creates for the user are refused (see
    canvases.create for the one racing it). The transaction that finds nothing more to delete records
    the event as processed; a crash before that leaves it unrecorded and the redelivered event simply
    carries on. An event already processed changes nothing.
    """
    if event_id and await ProcessedEvent.exists().where(ProcessedEvent.event_id == event_id).run():
        return Deletion(already_done=True)
    await (
        DeletedUser.insert(DeletedUser(user_id=user_id, deleted_at=utcnow()))
        .on_conflict(action="DO NOTHING")
        .run()
    )
    canvases = batches = 0
    while True:
        async with db.transaction():
            # Rows are locked in id order, the order the view flush updates them in (views.apply_batch):
            # two transactions taking row locks in one order cannot deadlock.
            batch = Canvas.select(Canvas.id).where(Canvas.user_id == user_id).order_by(Canvas.id)
            if db.engine().engine_type == "postgres":  # SQLite serialises writers: no row locks to order
                batch = batch.lock_rows()
            ids = [row["id"] for row in await batch.limit(batch_size).run()]
            deleted = (
                await Canvas.delete().where(Canvas.id.is_in(ids)).returning(Canvas.id).run() if ids else []
            )
            if len(deleted) < batch_size and event_id:
                await (
                    ProcessedEvent.insert(ProcessedEvent(event_id=event_id, processed_at=utcnow()))
                    .on_conflict(action="DO NOTHING")
                    .run()
                )
        await cache.forget(row["id"] for row in deleted)
        canvases += len(deleted)
        batches += 1 if deleted else 0
        if len(deleted) < batch_size:
            return Deletion(canvases=canvases, batches=batches)


def event_handler(cache: ReadCache, batch_size: int) -> Handler:
    """The stream handler: a malformed entry is poison (dead-lettered at once), not an error to retry."""

    async def handle(entry_id: str, fields: Fields) -> None:
        try:
            event = decode_event(fields[b"event"])
            user_id = uuid.UUID(event.user_id)
        except (KeyError, ValueError, msgspec.DecodeError) as exc:
            raise PoisonMessage(f"malformed user event: {exc!r}") from exc
        done = await delete_user(user_id, cache=cache, batch_size=batch_size, event_id=event.event_id)
        log.info(
            "user_canvases_deleted",
            entry_id=entry_id,
            event_id=event.event_id,
            deleted_user=str(user_id),
            canvases=done.canvases,
            redelivered=done.already_done,
        )

    return handle
