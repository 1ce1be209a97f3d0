"""The tokens sent in mails (password reset, email verification), stored only as their SHA-256.

A token has a session token's shape: 160 bits in lowercase base32 (32 characters). It is not kept
anywhere, not even in the mail outbox: the row's random id is, and the token is derived from it
with a key only the services hold (HMAC-SHA256 keyed by INTERNAL_SECRET, domain-separated), so the
request that issues it and the sender that mails it compute the same token while a copy of the
database alone (a backup, a leaked dump) yields no usable link. A change of INTERNAL_SECRET makes
the mails not yet sent undeliverable (the sender dead-letters them; the tokens already mailed keep
working, since only their hash is compared).

Single use is one UPDATE ... WHERE used_at IS NULL ... RETURNING, so two concurrent confirms of one
token cannot both succeed. A newer reset token for an address marks the older ones used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime, timedelta
from typing import Any

from piccolo.columns.combination import And

from services.auth.tables import MailToken

RESET = "reset"
VERIFY = "verify"
LIFETIME = {RESET: timedelta(hours=1), VERIFY: timedelta(hours=24)}
TOKEN_BYTES = 20  # 160 bits, like a session token
_DOMAIN = b"canvas-verse mail token v1\x00"


def token_for(token_id: uuid.UUID, secret: bytes) -> str:
    """The token of row `token_id`: 32 lowercase base32 characters."""
    digest = hmac.new(secret, _DOMAIN + token_id.bytes, hashlib.sha256).digest()
    return base64.b32encode(digest[:TOKEN_BYTES]).decode().lower()


def hash_of(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(
    purpose: str, *, user_id: uuid.UUID | None, email: str, now: datetime, secret: bytes
) -> uuid.UUID:
    """Store a new token (its hash) for `email`; returns the row id the sender derives it from.
    Call inside the transaction that also writes the mail."""
    token_id = uuid.uuid4()
    await MailToken.insert(
        MailToken(
            id=token_id,
            token_hash=hash_of(token_for(token_id, secret)),
            purpose=purpose,
            user_id=user_id,
            email=email,
            created_at=now,
            expires_at=now + LIFETIME[purpose],
        )
    ).run()
    return token_id


async def issued_since(purpose: str, email: str, since: datetime) -> int:
    """How many tokens of `purpose` were issued for `email` after `since` (the per-account cap)."""
    return int(
        await MailToken.count()
        .where((MailToken.purpose == purpose) & (MailToken.email == email) & (MailToken.created_at > since))
        .run()
    )


async def supersede(purpose: str, email: str, now: datetime) -> None:
    """Mark every unused token of `purpose` for `email` used: only the newest one works."""
    await (
        MailToken.update({MailToken.used_at: now})
        .where((MailToken.purpose == purpose) & (MailToken.email == email) & MailToken.used_at.is_null())
        .run()
    )


def _redeemable(token: str, purpose: str, now: datetime) -> And:
    """The one rule for a usable token: this purpose, unused, unexpired, of an account."""
    return (
        (MailToken.token_hash == hash_of(token))
        & (MailToken.purpose == purpose)
        & MailToken.used_at.is_null()
        & MailToken.user_id.is_not_null()
        & (MailToken.expires_at > now)
    )


async def is_redeemable(token: str, purpose: str, now: datetime) -> bool:
    """A cheap read before expensive work (hashing a new password); `redeem` decides."""
    return bool(await MailToken.exists().where(_redeemable(token, purpose, now)).run())


async def redeem(token: str, purpose: str, now: datetime) -> dict[str, Any] | None:
    """Use the token: its `{user_id, email}` if it was unused, unexpired and of an account, else None.
    Call inside the transaction that acts on it, so a failure later leaves it unused."""
    rows: list[dict[str, Any]] = (
        await MailToken.update({MailToken.used_at: now})
        .where(_redeemable(token, purpose, now))
        .returning(MailToken.user_id, MailToken.email)
        .run()
    )
    return rows[0] if rows else None


async def get(token_id: uuid.UUID) -> dict[str, Any] | None:
    row: dict[str, Any] | None = await MailToken.select().where(MailToken.id == token_id).first().run()
    return row


async def purge_expired(now: datetime) -> int:
    """Delete tokens past their expiry (used or not); returns how many."""
    deleted = await MailToken.delete().where(MailToken.expires_at <= now).returning(MailToken.id).run()
    return len(deleted)
