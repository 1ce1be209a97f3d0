"""Session validation: the Redis cache, one auth call per session id on a miss, fail closed.

Cache protocol (key `session:{id}`, shared.session_cache): a hit is a JSON CachedSession whose
expiry is still ahead. On a miss the gateway first writes a unique placeholder, asks the auth
service, then replaces the placeholder with the session only if the placeholder is still there
(compare-and-set in Lua). A revocation that purges the key while the auth call is in flight deletes
the placeholder, so a session revoked during validation is never cached afterwards.
Concurrent misses for one session in this process share one auth call (single flight). Redis down
or slow (`redis_timeout`) → the auth service decides alone; auth unreachable → 503, never a pass.

Lookups go through the lean client of `shared/resp.py` (one pipelined connection, hiredis; the
lookups of one event-loop turn leave in one write): redis-py spends ~110 µs of CPU per command, which
an MGET per loop turn had only amortised. The rest (placeholder, compare-and-set) stays on redis-py.

In front of Redis, each process keeps the sessions it found there for `GATEWAY_SESSION_MEMORY_TTL`
seconds (`SessionMemory`, issue 18: a proxied read made two Redis round trips, this lookup and the
canvas service's; bench/FINDINGS.md), and forgets one the moment Redis says its key changed: Redis's
server-assisted client-side caching, in broadcast mode (`CLIENT TRACKING ... BCAST PREFIX
session:`), sends every write or deletion of a `session:` key, by anyone, to this process's
invalidation channel as it executes it. A revocation deletes the key before the auth service
answers, so the invalidation reaches every gateway process before the revoking answer reaches its
client: a revoked token still fails at the very next request. The memory is used only while its
channel is open (a lost channel forgets everything at once), only while Redis is not bypassed, and
only entries read after the channel opened whose lookup no invalidation overtook; the channel is
pinged every second, so a silently dead one is dropped within a second (or `redis_timeout`, if
longer) of the next ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import hiredis
import msgspec
import structlog
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.redis_guard import RedisGuard
from gateway.upstreams import Upstream
from shared import internal_auth
from shared.errors import AppError, Unavailable
from shared.redis import REDIS_UNAVAILABLE
from shared.resp import Connection, LeanRedis, Reply
from shared.session_cache import BACKSTOP_TTL, PREFIX, CachedSession, cache_key
from shared.timeutil import utcnow

log = structlog.get_logger()

VALIDATE_PATH = "/internal/sessions/validate"
PLACEHOLDER_TTL_MS = 10_000

CACHE_LOOKUPS = Counter(
    "canvasverse_gateway_session_cache_total", "Session cache lookups by result", ["result"]
)
VALIDATIONS = Counter(
    "canvasverse_gateway_session_validations_total", "Calls to the auth service by outcome", ["outcome"]
)
_HIT, _MISS, _BYPASS = (CACHE_LOOKUPS.labels(r) for r in ("hit", "miss", "unavailable"))

_REPLACE_PLACEHOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return false
"""


class _ValidateRequest(msgspec.Struct, rename="camel"):
    session_id: str


class _ValidateResponse(msgspec.Struct, rename="camel"):
    user_id: str
    session_id: str
    expires_at: datetime
    renewed: bool = False


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    session_id: str
    expires_at: datetime
    renewed: bool = False


_cached_decoder = msgspec.json.Decoder(CachedSession)
_validate_decoder = msgspec.json.Decoder(_ValidateResponse)
_encoder = msgspec.json.Encoder()


_PREFIX = PREFIX.encode()
_TRACKING = (b"CLIENT", b"TRACKING", b"ON", b"REDIRECT")
_INVALIDATIONS = b"__redis__:invalidate"


class SessionMemory:
    """The sessions this process found in Redis, each for at most `ttl` seconds (see the module doc).

    `run()` keeps the invalidation channel open (a lifespan task). `version` counts invalidations and
    channel changes: a lookup keeps its answer only if `version` did not move while it was in flight,
    so an invalidation that overtook the answer is never undone."""

    PING = 1.0  # seconds between pings on the channel, and between attempts to open it
    RETRY_REFUSED = 60.0  # seconds before asking again a Redis that refused tracking

    def __init__(self, lean: LeanRedis, ttl: float, *, size: int = 10_000, timeout: float = 1.0) -> None:
        self.ttl = ttl
        self.size = size
        self.timeout = timeout
        self.version = 0
        self._lean = lean
        self._entries: dict[str, tuple[float, Session]] = {}
        self._channel: Connection | None = None

    @property
    def live(self) -> bool:
        return self._channel is not None and self._channel.lost is None

    def get(self, session_id: str) -> Session | None:
        channel = self._channel
        if channel is None or channel.lost is not None:
            return None
        entry = self._entries.get(session_id)
        if entry is None:
            return None
        if entry[0] <= time.monotonic():
            del self._entries[session_id]
            return None
        return entry[1]

    def keep(self, session: Session, version: int) -> None:
        """Remember a session read from Redis by a lookup that started at `version`."""
        if version != self.version or not self.live:
            return
        left = (session.expires_at - utcnow()).total_seconds()
        if left <= 0:
            return
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # the oldest
        self._entries[session.session_id] = (time.monotonic() + min(self.ttl, left), session)

    def _invalidated(self, message: Reply) -> None:
        """[b"message", channel, [keys]] for written or deleted keys; [..., None] for a flush."""
        self.version += 1
        keys = message[2]
        if keys is None:
            self._entries.clear()
            return
        for key in keys:
            self._entries.pop(key[len(_PREFIX) :].decode("latin-1"), None)

    async def run(self) -> None:
        """Open the invalidation channel and keep it open; reopen it when it breaks."""
        while True:
            pause = self.PING
            try:
                await self._listen()
            except ResponseError as exc:  # refused: a Redis before 6.0, an ACL without CLIENT, ...
                if not str(exc).startswith("LOADING"):  # (not a Redis still reading its AOF)
                    log.warning("session_memory_off", error=str(exc), retry_seconds=self.RETRY_REFUSED)
                    pause = self.RETRY_REFUSED
            except REDIS_UNAVAILABLE as exc:
                log.info("session_memory_channel_lost", error=str(exc))
            except Exception:  # the memory stays off until the channel is back; the loop never ends
                log.exception("session_memory_channel_failed")
            await asyncio.sleep(pause)

    async def _listen(self) -> None:
        channel = await self._lean.subscriber(self._invalidated)
        try:
            client_id = await self._command(channel, b"CLIENT", b"ID")
            await self._command(channel, *_TRACKING, client_id, b"BCAST", b"PREFIX", _PREFIX)
            await self._command(channel, b"SUBSCRIBE", _INVALIDATIONS)
            self._entries.clear()
            self.version += 1
            self._channel = channel
            while True:
                await asyncio.sleep(self.PING)
                await self._command(channel, b"PING")
        finally:
            self._channel = None
            self._entries.clear()
            self.version += 1
            channel.close()

    async def _command(self, channel: Connection, *args: bytes | int) -> Reply:
        try:
            async with asyncio.timeout(self.timeout):
                return await channel.send(hiredis.pack_command(args))  # type: ignore[arg-type]
        except TimeoutError:
            raise RedisTimeoutError("Timeout on the session invalidation channel") from None


class SessionValidator:
    def __init__(
        self, redis: Redis, guard: RedisGuard, auth: Upstream, secret: bytes, *, memory_ttl: float = 0.0
    ) -> None:
        self.redis = redis
        self.guard = guard
        self.auth = auth
        self.secret = secret
        self._inflight: dict[str, asyncio.Future[Session | None]] = {}
        self._replace = redis.register_script(_REPLACE_PLACEHOLDER)
        self._lean = LeanRedis.like(redis)
        timeout = redis.connection_pool.connection_kwargs.get("socket_timeout") or 1.0
        self.memory = SessionMemory(self._lean, memory_ttl, timeout=max(timeout, 1.0))
        self._remembering: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Open the session memory's invalidation channel (nothing when its TTL is 0)."""
        if self.memory.ttl > 0 and self._remembering is None:
            self._remembering = asyncio.create_task(self.memory.run(), name="session-memory")

    async def aclose(self) -> None:
        if self._remembering is not None:
            self._remembering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._remembering
        await self._lean.aclose()

    async def validate(self, session_id: str, request_id: str) -> Session | None:
        """The live session, or None when auth says it is unknown/expired; 503 when undecidable."""
        cached = await self._cached(session_id)
        if cached is not None:
            return cached
        flight = self._inflight.get(session_id)
        if flight is None:
            flight = asyncio.ensure_future(self._validate_and_cache(session_id, request_id))
            self._inflight[session_id] = flight
            flight.add_done_callback(lambda f: self._landed(session_id, f))
        return await asyncio.shield(flight)

    def _landed(self, session_id: str, flight: asyncio.Future[Session | None]) -> None:
        self._inflight.pop(session_id, None)
        if not flight.cancelled():
            flight.exception()  # retrieved here too, in case every waiter went away

    async def _cached(self, session_id: str) -> Session | None:
        if not self.guard.available:
            _BYPASS.inc()
            return None
        memory = self.memory
        remembered = memory.get(session_id)
        if remembered is not None:
            _HIT.inc()
            return remembered
        version = memory.version
        try:
            raw = await self._lean.execute(b"GET", cache_key(session_id), retry=True)
        except REDIS_UNAVAILABLE as exc:
            self.guard.failed(exc)
            _BYPASS.inc()
            return None
        if raw and raw[:1] == b"{":
            try:
                entry = _cached_decoder.decode(raw)
            except msgspec.DecodeError:
                entry = None
            if entry is not None and entry.expires_at > utcnow():
                _HIT.inc()
                session = Session(entry.user_id, session_id, entry.expires_at)
                memory.keep(session, version)
                return session
        _MISS.inc()
        return None

    async def _validate_and_cache(self, session_id: str, request_id: str) -> Session | None:
        placeholder = await self._place_placeholder(session_id)
        session = await self._ask_auth(session_id, request_id)
        if session is not None and placeholder is not None:
            await self._store(session, placeholder)
        return session

    async def _place_placeholder(self, session_id: str) -> str | None:
        if not self.guard.available:
            return None
        placeholder = f"pending:{secrets.token_hex(8)}"
        try:
            await self.redis.set(cache_key(session_id), placeholder, px=PLACEHOLDER_TTL_MS)
        except REDIS_UNAVAILABLE as exc:
            self.guard.failed(exc)
            return None
        return placeholder

    async def _store(self, session: Session, placeholder: str) -> None:
        ttl = min(int((session.expires_at - utcnow()).total_seconds()), BACKSTOP_TTL)
        if ttl <= 0 or not self.guard.available:
            return
        value = _encoder.encode(CachedSession(user_id=session.user_id, expires_at=session.expires_at))
        try:
            await self._replace(keys=[cache_key(session.session_id)], args=[placeholder, value, ttl])
        except REDIS_UNAVAILABLE as exc:
            self.guard.failed(exc)

    async def _ask_auth(self, session_id: str, request_id: str) -> Session | None:
        headers = {
            "content-type": "application/json",
            "x-request-id": request_id,
            internal_auth.HEADER: internal_auth.sign(self.secret, audience="auth", request_id=request_id),
        }
        body = _encoder.encode(_ValidateRequest(session_id=session_id))
        try:
            status, payload = await self.auth.json("POST", VALIDATE_PATH, headers=headers, body=body)
            if status == 404:
                VALIDATIONS.labels("invalid").inc()
                return None
            if status != 200:
                raise RuntimeError(f"validate answered {status}")
            answer = _validate_decoder.decode(payload)
        except (AppError, RuntimeError, msgspec.DecodeError) as exc:
            VALIDATIONS.labels("unavailable").inc()
            retry = 5
            if isinstance(exc, AppError):
                retry = int(exc.headers.get("Retry-After", retry))
            raise Unavailable("Sessions cannot be checked right now", retry_after=retry) from exc
        VALIDATIONS.labels("valid").inc()
        return Session(answer.user_id, session_id, answer.expires_at, answer.renewed)
