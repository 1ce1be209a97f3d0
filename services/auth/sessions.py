"""Sessions in the Lucia model: random tokens, stored only as their SHA-256, sliding expiry.

The token (20 random bytes, lowercase base32 without padding) goes to the client once, at login;
the database keeps `id = hex(sha256(token))`. A session lives `session_lifetime` (30 days), slides
back to that when a validation finds less than `session_renew_within` (15 days) left, and never
outlives `created_at + session_absolute_lifetime` (90 days). Every revocation deletes the gateway's
cache entries of the revoked sessions in the same request.

Revocation fails closed (issue 13): the cache entries are purged inside the revoking transaction,
before it commits, and once more after (a gateway may have refilled one from the not yet committed
state in between). If Redis cannot be reached, the purge raises `Unavailable`: before the commit the
revocation rolls back and the client gets 503 with nothing changed; after it (Redis died in between)
the client gets 503 for a revocation that did commit. So a 2xx revocation always found its cache
entries deleted, and an entry cannot come back with Redis's append-only file. The alternative, an
outbox of purges replayed when Redis returns with stamped cache entries, needs every gateway to
refuse entries older than the last revocation; fail-closed needs nothing beyond this module, and a
revocation while Redis is down is rare and retryable.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import msgspec
import structlog
from piccolo.custom_types import Combinable
from redis.asyncio import Redis

from services.auth import db
from services.auth.settings import AuthSettings
from services.auth.tables import Session
from shared import session_cache
from shared.db import RowByKey
from shared.errors import Unavailable
from shared.redis import REDIS_UNAVAILABLE
from shared.timeutil import utcnow
from shared.tokens import session_id_of

log = structlog.get_logger()

TOKEN_BYTES = 20  # 160 bits
USER_AGENT_MAX = 256  # characters of the User-Agent kept with a session
_SESSION_ID = re.compile(r"[0-9a-f]{64}")
# The gateway's validation path (issue 18): only what a validation needs.
_by_id = RowByKey(Session, Session.id, [Session.id, Session.user_id, Session.created_at, Session.expires_at])


def new_token() -> str:
    # 160 bits are exactly 32 base32 characters, so there is never any padding to strip.
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode().lower()


def is_session_id(value: str) -> bool:
    return _SESSION_ID.fullmatch(value) is not None


class SessionInfo(msgspec.Struct, frozen=True):
    id: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    user_agent: str | None = None
    ip: str | None = None


def _info(row: dict[str, Any]) -> SessionInfo:
    return SessionInfo(
        id=row["id"],
        user_id=str(row["user_id"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        user_agent=row.get("user_agent"),
        ip=row.get("ip"),
    )


class SessionService:
    """Create, validate (sliding), list and revoke sessions. `clock` is injectable for tests."""

    def __init__(self, redis: Redis, settings: AuthSettings, clock: Callable[[], datetime] = utcnow) -> None:
        self.redis = redis
        self.lifetime = settings.session_lifetime
        self.renew_within = settings.session_renew_within
        self.absolute_lifetime = settings.session_absolute_lifetime
        self.clock = clock

    async def create(
        self, user_id: str, *, user_agent: str | None = None, ip: str | None = None
    ) -> tuple[str, SessionInfo]:
        """A new session for the user; returns the token (never stored) and the session.

        `user_agent` (its first 256 characters) and `ip` (the client address the gateway saw) are
        kept so the user can tell their sessions apart; None when unknown.
        """
        token = new_token()
        now = self.clock()
        info = SessionInfo(
            id=session_id_of(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + self.lifetime,
            user_agent=user_agent[:USER_AGENT_MAX] if user_agent else None,
            ip=ip or None,
        )
        await Session.insert(
            Session(
                id=info.id,
                user_id=user_id,
                created_at=info.created_at,
                expires_at=info.expires_at,
                user_agent=info.user_agent,
                ip=info.ip,
            )
        ).run()
        return token, info

    async def validate(self, session_id: str) -> tuple[SessionInfo, bool] | None:
        """The live session and whether its expiry slid forward now; None when unknown or expired.
        Its `user_agent` and `ip` are not read (None): a validation does not need them."""
        if not is_session_id(session_id):
            return None
        row = await _by_id(session_id)
        if row is None:
            return None
        info, now = _info(row), self.clock()
        hard_end = info.created_at + self.absolute_lifetime
        if now >= min(info.expires_at, hard_end):
            await Session.delete().where(Session.id == session_id).run()
            return None
        if info.expires_at - now >= self.renew_within:
            return info, False
        slid = min(now + self.lifetime, hard_end)
        if slid <= info.expires_at:
            return info, False
        await Session.update({Session.expires_at: slid}).where(Session.id == session_id).run()
        return msgspec.structs.replace(info, expires_at=slid), True

    async def list_for(self, user_id: str) -> list[SessionInfo]:
        """The user's live sessions, newest first."""
        rows = (
            await Session.select()
            .where((Session.user_id == user_id) & (Session.expires_at > self.clock()))
            .order_by(Session.created_at, Session.id, ascending=False)
            .run()
        )
        return [_info(row) for row in rows]

    async def revoke(self, user_id: str, session_id: str) -> bool:
        """Revoke one of the user's sessions; False when it is not theirs (or unknown)."""
        if not is_session_id(session_id):
            return False
        async with db.transaction():
            deleted = (
                await Session.delete()
                .where((Session.id == session_id) & (Session.user_id == user_id))
                .returning(Session.id)
                .run()
            )
            await self.forget([row["id"] for row in deleted])  # raises (rolls back) if Redis is down
        await self.forget([row["id"] for row in deleted])
        return bool(deleted)

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every session of the user, except `keep`; returns how many were revoked."""
        async with db.transaction():
            revoked = await self.delete_all(user_id, keep=keep)
            await self.forget(revoked)  # raises (rolls back) if Redis is down
        await self.forget(revoked)
        return len(revoked)

    async def delete_all(self, user_id: str, *, keep: str | None = None) -> list[str]:
        """Delete the user's sessions (but `keep`) without purging the cache: for use inside a
        transaction, followed by `forget` before it commits and again once it has."""
        condition: Combinable = Session.user_id == user_id
        if keep is not None:
            condition &= Session.id != keep
        deleted = await Session.delete().where(condition).returning(Session.id).run()
        return [row["id"] for row in deleted]

    async def forget(self, session_ids: Iterable[str]) -> None:
        """Delete the gateway's cache entries of revoked sessions; `Unavailable` (503) if Redis is down.

        Call it inside the revoking transaction (a failure rolls the revocation back) and again after
        the commit: see the module docstring.
        """
        ids = list(session_ids)
        if not ids:
            return
        try:
            await session_cache.purge(self.redis, ids)
        except REDIS_UNAVAILABLE as exc:
            log.warning("session_cache_purge_failed", sessions=len(ids), error=str(exc))
            raise Unavailable("The session cache cannot be updated: the revocation did not complete") from exc

    async def purge_expired(self) -> int:
        """Delete every expired session (they would be refused anyway); returns how many."""
        now = self.clock()
        deleted = await Session.delete().where(Session.expires_at <= now).returning(Session.id).run()
        return len(deleted)
