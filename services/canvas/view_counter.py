"""Exact view counters: every read is counted in Redis, and the counts are flushed to the database.

A hot canvas must not serialise its reads on one row lock (docs/architecture.md, decision 6), so a read only
increments a Redis hash; a flusher moves the counts to `canvas.views` in batches.

Redis keys (shared by every canvas process):
- `canvas-views:open`            id of the open batch (absent until the first read after a flush)
- `canvas-views:batch:{id}`      hash canvas id -> reads counted in that batch
- `canvas-views:pending`         set of closed batch ids that may not be applied yet

A read runs one Lua script: HINCRBY in the open batch (opening one if needed), then return this
canvas's count in the open batch and in every pending one. The flusher closes the open batch with
another script (its id moves to the pending set; the next read opens a new one), then for each
pending batch adds its counts to `canvas.views` AND inserts the batch id into `view_batch` in ONE
database transaction; only after the commit does it drop the batch from Redis. So a crash before the
commit leaves the batch pending, to be applied by the next flush of any process; a crash after it
leaves a batch whose id is already in `view_batch`, which is then dropped without being applied again.
Concurrent flushers are safe for the same reason (the insert of the batch id decides who applies it).

The count a read returns is `canvas.views` plus the buffered counts of the batches that are not
applied, where `views` and "applied" come from ONE statement (one snapshot): a batch committed
between the Redis step and the database step is then counted once, never twice or not at all.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from redis.asyncio import Redis

from services.canvas import db
from services.canvas.tables import Canvas, ViewBatch
from shared.errors import Unavailable
from shared.redis import REDIS_UNAVAILABLE
from shared.timeutil import utcnow

log = structlog.get_logger()

OPEN_KEY = "canvas-views:open"
PENDING_KEY = "canvas-views:pending"
BATCH_PREFIX = "canvas-views:batch:"
DOC_PREFIX = "canvas-doc:"  # the read cache's hash per canvas (read_cache.py), with its running total


def new_batch_id() -> str:
    """The id a counted read offers for a new batch (used only when none is open): 128 random bits
    as 32 hex digits, like `uuid4().hex` for a third of its CPU (it runs on every counted read)."""
    return secrets.token_hex(16)


# KEYS: open, pending, the canvas's read-cache doc when counting. ARGV: new batch id ('' = count
# nothing), batch prefix, canvas ids... A cached canvas's running total counts every read, this one too.
_READ = """
local open = redis.call('GET', KEYS[1])
if ARGV[1] ~= '' then
  if not open then
    open = ARGV[1]
    redis.call('SET', KEYS[1], open)
  end
  redis.call('HINCRBY', ARGV[2] .. open, ARGV[3], 1)
  if redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('HINCRBY', KEYS[3], 'views', 1)
  end
end
local batches = redis.call('SMEMBERS', KEYS[2])
if open then table.insert(batches, open) end
local out = {}
for _, batch in ipairs(batches) do
  table.insert(out, batch)
  table.insert(out, redis.call('HMGET', ARGV[2] .. batch, unpack(ARGV, 3)))
end
return out
"""

# KEYS: open, pending. Moves the open batch (if any) to the pending set.
_CLOSE = """
local open = redis.call('GET', KEYS[1])
if open then
  redis.call('SADD', KEYS[2], open)
  redis.call('DEL', KEYS[1])
end
return open
"""

# One snapshot of the counters and of which batches are applied.
_SETTLED_SQL = (
    "SELECT 'c' AS kind, CAST(id AS VARCHAR(36)) AS k, views AS n FROM canvas WHERE id IN ({ids})"
    " UNION ALL SELECT 'b' AS kind, batch_id AS k, 0 AS n FROM view_batch WHERE batch_id IN ({batches})"
)


class ViewCounter:
    def __init__(self, redis: Redis, *, batch_retention: float = 86_400.0) -> None:
        self.redis = redis
        self.batch_retention = timedelta(seconds=batch_retention)
        self._read = redis.register_script(_READ)
        self._close = redis.register_script(_CLOSE)

    async def count_view(self, canvas_id: uuid.UUID) -> Snapshot:
        """Count one read of the canvas; the snapshot's `totals` include this read (empty if it is gone)."""
        buffered = await self._buffered([canvas_id], count=True)
        return await snapshot([canvas_id], buffered)

    async def current(self, canvas_ids: Sequence[uuid.UUID]) -> dict[str, int]:
        """The views of these canvases (by id string), counting nothing."""
        if not canvas_ids:
            return {}
        return (await snapshot(canvas_ids, await self._buffered(canvas_ids, count=False))).totals

    async def _buffered(self, canvas_ids: Sequence[uuid.UUID], *, count: bool) -> dict[str, list[int]]:
        """Batch id -> buffered counts, aligned with `canvas_ids`."""
        new_batch = new_batch_id() if count else ""
        try:
            keys = [OPEN_KEY, PENDING_KEY, DOC_PREFIX + str(canvas_ids[0]) if count else ""]
            reply = await self._read(keys=keys, args=[new_batch, BATCH_PREFIX, *map(str, canvas_ids)])
        except REDIS_UNAVAILABLE as exc:
            raise Unavailable("the view counter (Redis) is unavailable") from exc
        return {reply[i].decode(): [int(n or 0) for n in reply[i + 1]] for i in range(0, len(reply), 2)}

    async def close_open_batch(self) -> str | None:
        """The hand-off: the open batch (if any) becomes pending; returns its id."""
        closed = await self._close(keys=[OPEN_KEY, PENDING_KEY])
        return closed.decode() if closed else None

    async def flush(self) -> int:
        """Apply every pending batch, then close the open one and apply it; returns the views applied.

        Batches left pending (by a crash, or by a flush that failed) go first, and while they cannot
        be applied no new batch is closed, so a database outage does not pile up pending batches.
        """
        applied = await self._apply_pending()
        if await self.close_open_batch():
            applied += await self._apply_pending()
        if applied:
            await ViewBatch.delete().where(ViewBatch.applied_at < utcnow() - self.batch_retention).run()
        return applied

    async def _apply_pending(self) -> int:
        applied = 0
        pending: Any = await self.redis.smembers(PENDING_KEY)
        for batch_id in sorted(b.decode() for b in pending):
            counts: Any = await self.redis.hgetall(BATCH_PREFIX + batch_id)
            applied += await apply_batch(batch_id, {k.decode(): int(v) for k, v in counts.items()})
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.srem(PENDING_KEY, batch_id)
                pipe.delete(BATCH_PREFIX + batch_id)
                await pipe.execute()
        return applied


async def apply_batch(batch_id: str, counts: dict[str, int]) -> int:
    """Add a batch's counts to the canvases, once: returns the views applied (0 if it already was)."""
    async with db.transaction():
        fresh = (
            await ViewBatch.insert(ViewBatch(batch_id=batch_id, applied_at=utcnow()))
            .on_conflict(action="DO NOTHING")
            .returning(ViewBatch.batch_id)
            .run()
        )
        if not fresh:
            return 0
        # In id order, the order the cascade locks rows in (cascade.delete_user): no deadlock between them.
        # (A UUID's text and PostgreSQL's order of uuid values agree.)
        for canvas_id, n in sorted(counts.items()):
            await (
                Canvas.update({Canvas.views: Canvas.views + n}).where(Canvas.id == uuid.UUID(canvas_id)).run()
            )
    return sum(counts.values())


@dataclass(frozen=True)
class Snapshot:
    """What one statement saw: the stored counts, which buffered batches they include, and the totals."""

    stored: dict[str, int]  # canvas id -> `canvas.views` (only canvases that exist)
    applied: dict[str, bool]  # each buffered batch asked about -> already added to `stored`
    totals: dict[str, int]  # stored + the buffered counts of the batches not applied


async def snapshot(canvas_ids: Sequence[uuid.UUID], buffered: dict[str, list[int]]) -> Snapshot:
    batches = list(buffered) or [""]
    sql = _SETTLED_SQL.format(
        ids=", ".join("{}" for _ in canvas_ids), batches=", ".join("{}" for _ in batches)
    )
    stored: dict[str, int] = {}
    applied = set()
    for row in await Canvas.raw(sql, *canvas_ids, *batches).run():
        if row["kind"] == "c":
            stored[row["k"]] = int(row["n"])
        else:
            applied.add(row["k"])
    totals = dict(stored)
    for batch_id, counts in buffered.items():
        if batch_id not in applied:
            for canvas_id, n in zip(canvas_ids, counts, strict=True):
                if str(canvas_id) in totals:
                    totals[str(canvas_id)] += n
    return Snapshot(stored, {batch_id: batch_id in applied for batch_id in buffered}, totals)
