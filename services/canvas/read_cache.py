"""The read cache: a canvas read served from Redis, its view counted in the same Lua call.

A hot canvas is read far more often than it changes. Its document (the Canvas JSON), owner, public
flag and running view total live in one Redis hash; a read is then one Lua call that checks
visibility, counts the view in the open batch of view_counter.py (so the flusher moves it to the table as
before) and increments the total, and answers without touching the database.

Redis keys:
- `canvas-doc:{id}`      hash: doc, etag, owner, public ('1'/'0'), views (the running total); expires
                         after `ttl` seconds, so a missed invalidation is bounded. The ETag is filled
                         with the doc from the same row, and dropped with it by every change.
- `canvas-doc-gen:{id}`  bumped by every change or deletion of the canvas, before the doc is dropped

A miss (no doc) is served from the database as before, then the doc is filled by a second script
that refuses when it could be stale or miscounted:
- the canvas's generation changed since the miss (a write committed after we may have read the row);
- the total is `views` of the snapshot statement plus the buffered counts of the batches it did not
  include, taken at fill time; so every batch still buffered must be one the snapshot was asked
  about, and every batch it saw unapplied must still be buffered (otherwise its counts may have moved
  to the table after the snapshot and be lost or counted twice).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import structlog
from prometheus_client import Counter

from services.canvas import schemas
from services.canvas.settings import CanvasSettings
from services.canvas.view_counter import (
    BATCH_PREFIX,
    DOC_PREFIX,
    OPEN_KEY,
    PENDING_KEY,
    Snapshot,
    ViewCounter,
    new_batch_id,
)
from shared.errors import Unavailable
from shared.redis import REDIS_UNAVAILABLE
from shared.resp import LeanRedis, LeanScript

GEN_PREFIX = "canvas-doc-gen:"
log = structlog.get_logger()

GEN_TTL = 86_400  # seconds; far longer than any read between its miss and its fill

# KEYS: doc, open, pending, gen. ARGV: new batch id, batch prefix, canvas id, caller uid ('' = anonymous).
# Returns {0, gen} on a miss, {1} when the caller may not see the canvas, {2, doc, views, etag} on a
# hit. A doc without an ETag (cached by a version before ETags) is dropped and is a miss.
_HIT = LeanScript("""
local doc = redis.call('HMGET', KEYS[1], 'doc', 'owner', 'public', 'etag')
if doc[1] and not doc[4] then
  redis.call('DEL', KEYS[1])
  doc[1] = false
end
if not doc[1] then
  return {0, redis.call('GET', KEYS[4]) or '0'}
end
if doc[3] ~= '1' and doc[2] ~= ARGV[4] then
  return {1}
end
local open = redis.call('GET', KEYS[2])
if not open then
  open = ARGV[1]
  redis.call('SET', KEYS[2], open)
end
redis.call('HINCRBY', ARGV[2] .. open, ARGV[3], 1)
return {2, doc[1], redis.call('HINCRBY', KEYS[1], 'views', 1), doc[4]}
""")

# KEYS: doc, gen, open, pending. ARGV: gen at the miss, ttl, doc, owner, public, stored views,
# batch prefix, canvas id, etag, then (batch id, '1' applied / '0' not) pairs. Returns 1 if filled.
_FILL = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local known, unapplied = {}, 0
for i = 10, #ARGV, 2 do
  known[ARGV[i]] = ARGV[i + 1]
  if ARGV[i + 1] == '0' then unapplied = unapplied + 1 end
end
local buffered = redis.call('SMEMBERS', KEYS[4])
local open = redis.call('GET', KEYS[3])
if open then table.insert(buffered, open) end
local total, seen = tonumber(ARGV[6]), 0
for _, batch in ipairs(buffered) do
  local flag = known[batch]
  if flag == nil then return 0 end
  if flag == '0' then
    seen = seen + 1
    total = total + tonumber(redis.call('HGET', ARGV[7] .. batch, ARGV[8]) or '0')
  end
end
if seen ~= unapplied then return 0 end
redis.call('HSET', KEYS[1], 'doc', ARGV[3], 'etag', ARGV[9], 'owner', ARGV[4], 'public', ARGV[5],
  'views', total)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

_canvas_decoder = msgspec.json.Decoder(schemas.Canvas)

LOOKUPS = Counter("canvasverse_canvas_read_cache_total", "Canvas reads by read-cache result", ["result"])
_HITS, _MISSES, _HIDDEN_READS = (LOOKUPS.labels(result) for result in ("hit", "miss", "hidden"))
FILLS = Counter("canvasverse_canvas_read_cache_fills_total", "Read-cache fills after a miss", ["result"])


@dataclass(frozen=True)
class Miss:
    gen: bytes  # the canvas's generation when the doc was found missing


HIDDEN = object()  # the doc is cached, and the caller may not see it


class ReadCache:
    """The read path over the view counter: a cached read counts through the same batches.

    The hit script, run by every cached read, goes through a lean client on the same Redis
    (`shared/resp.py`: a fraction of redis-py's CPU per call); `aclose()` closes it.
    """

    def __init__(self, views: ViewCounter, *, ttl: int, max_bytes: int) -> None:
        self.views = views
        self.redis = redis = views.redis
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._lean = LeanRedis.like(redis)
        self._fill = redis.register_script(_FILL)

    @classmethod
    def configured(cls, views: ViewCounter, config: CanvasSettings) -> ReadCache:
        return cls(views, ttl=config.read_cache_ttl, max_bytes=config.read_cache_max_bytes)

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    async def lookup(
        self, canvas_id: uuid.UUID, uid: uuid.UUID | None
    ) -> tuple[schemas.Canvas, str] | Miss | object:
        """(The canvas with this read counted, its ETag), HIDDEN (nothing counted), or a Miss to serve
        otherwise."""
        key = str(canvas_id)
        try:
            reply = await self._lean.evalsha(
                _HIT,
                [DOC_PREFIX + key, OPEN_KEY, PENDING_KEY, GEN_PREFIX + key],
                [new_batch_id(), BATCH_PREFIX, key, str(uid) if uid else ""],
            )
        except REDIS_UNAVAILABLE as exc:
            raise Unavailable("the view counter (Redis) is unavailable") from exc
        if reply[0] == 0:
            _MISSES.inc()
            return Miss(reply[1])
        if reply[0] == 1:
            _HIDDEN_READS.inc()
            return HIDDEN
        _HITS.inc()
        return msgspec.structs.replace(_canvas_decoder.decode(reply[1]), views=int(reply[2])), reply[
            3
        ].decode()

    async def fill(self, miss: Miss, canvas: schemas.Canvas, etag: str, seen: Snapshot) -> bool:
        """Cache a canvas read from the database after `miss`; False when refused (see the module doc)."""
        doc = msgspec.json.encode(canvas)
        if len(doc) > self.max_bytes or canvas.id not in seen.stored:
            return False
        flags = [item for batch, applied in seen.applied.items() for item in (batch, "1" if applied else "0")]
        try:
            filled = await self._fill(
                keys=[DOC_PREFIX + canvas.id, GEN_PREFIX + canvas.id, OPEN_KEY, PENDING_KEY],
                args=[
                    miss.gen,
                    self.ttl,
                    doc,
                    canvas.user_id,
                    "1" if canvas.is_public else "0",
                    seen.stored[canvas.id],
                    BATCH_PREFIX,
                    canvas.id,
                    etag,
                    *flags,
                ],
            )
        except REDIS_UNAVAILABLE:
            return False  # only a cache: the read itself was served
        FILLS.labels("filled" if filled else "refused").inc()
        return bool(filled)

    async def aclose(self) -> None:
        await self._lean.aclose()

    async def forget(self, canvas_ids: Iterable[uuid.UUID | str]) -> None:
        """After a change or deletion commits: bump each generation, then drop the doc.

        The write is committed whatever happens here, so a Redis failure is logged, not raised: the
        doc it could not drop expires within `ttl` seconds.
        """
        ids = [str(canvas_id) for canvas_id in canvas_ids]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in ids:
                    pipe.incr(GEN_PREFIX + key)
                    pipe.expire(GEN_PREFIX + key, GEN_TTL)
                    pipe.delete(DOC_PREFIX + key)
                await pipe.execute()
        except REDIS_UNAVAILABLE as exc:
            log.warning("read_cache_forget_failed", canvases=len(ids), error=str(exc), expires_in=self.ttl)
