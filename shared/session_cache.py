"""The gateway's session cache in Redis (docs/architecture.md, decision 3), shared with the auth service.

Key `session:{sessionId}` → JSON {userId, expiresAt}; the gateway writes it with a TTL bounded by
the session's expiry and BACKSTOP_TTL. The auth service deletes the keys of every revoked session
within the revoking request.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec
from redis.asyncio import Redis

PREFIX = "session:"
BACKSTOP_TTL = 60  # seconds: bounds the damage if a purge is ever lost


class CachedSession(msgspec.Struct, rename="camel", frozen=True):
    user_id: str
    expires_at: datetime


def cache_key(session_id: str) -> str:
    return f"{PREFIX}{session_id}"


async def purge(redis: Redis, session_ids: Iterable[str]) -> int:
    """Delete the cache entries of these sessions; returns how many existed."""
    keys = [cache_key(sid) for sid in session_ids]
    return int(await redis.delete(*keys)) if keys else 0
