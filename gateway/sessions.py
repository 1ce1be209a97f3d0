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
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import datetime

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis

from gateway.redis_guard import RedisGuard
from gateway.upstreams import Upstream
from shared import internal_auth
from shared.errors import AppError, Unavailable
from shared.redis import REDIS_UNAVAILABLE
from shared.resp import LeanRedis
from shared.session_cache import BACKSTOP_TTL, CachedSession, cache_key
from shared.timeutil import utcnow

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


class SessionValidator:
    def __init__(self, redis: Redis, guard: RedisGuard, auth: Upstream, secret: bytes) -> None:
        self.redis = redis
        self.guard = guard
        self.auth = auth
        self.secret = secret
        self._inflight: dict[str, asyncio.Future[Session | None]] = {}
        self._replace = redis.register_script(_REPLACE_PLACEHOLDER)
        self._lean = LeanRedis.like(redis)

    async def aclose(self) -> None:
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
                return Session(entry.user_id, session_id, entry.expires_at)
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
