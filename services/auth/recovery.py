"""Account recovery and email verification: reset and verification requests, their confirmations.

Every flow writes its mails through the mail outbox inside its own transaction (mail.py).

A reset request answers 202 whatever the email, and does the same work either way: it looks the
account up, counts the address's recent reset tokens, supersedes the older ones and stores a new
token and a mail request, with `user_id` null when there is no account (that token can never be
redeemed, and the sender sends nothing for it). No password is hashed on this route, so nothing
takes longer for an existing account. At most `mail_account_limit` (3) mails an hour go to one
address: past that, requests still answer 202 and send nothing.
"""

from __future__ import annotations

import math
import uuid
from datetime import timedelta
from typing import Any

import structlog
from redis.asyncio import Redis

from services.auth import db, mail, mail_tokens
from services.auth.passwords import Passwords
from services.auth.sessions import SessionService
from services.auth.settings import AuthSettings
from services.auth.tables import User
from shared.errors import BadRequest, Conflict, TooManyRequests, Unauthorized, Unavailable
from shared.redis import REDIS_UNAVAILABLE
from shared.timeutil import utcnow

log = structlog.get_logger()

INVALID_TOKEN = "The link is invalid or has expired; ask for a new one"  # noqa: S105 - one answer for every bad token
MAIL_WINDOW = timedelta(hours=1)
RESET_SCOPE = "reset"
VERIFY_SCOPE = "verify"

# KEYS: the client's counter. ARGV: limit, window (ms). 0 when admitted, else ms until it may retry.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
  return ttl
end
return 0
"""


class MailRequestLimit:
    """Reset and verification requests per client address over a fixed hour (429 past the limit).

    Hand-written (one Lua script) rather than Litestar's RateLimitMiddleware: the client here is the
    address in the internal credential, not the peer (the gateway), and only two routes count.
    """

    def __init__(self, redis: Redis, settings: AuthSettings) -> None:
        self.limit = settings.mail_client_limit
        self.window_ms = int(MAIL_WINDOW.total_seconds() * 1000)
        self._count = redis.register_script(_COUNT)

    async def admit(self, scope: str, client: str) -> None:
        try:
            wait_ms = int(
                await self._count(keys=[f"auth:mail:{scope}:{client}"], args=[self.limit, self.window_ms])
            )
        except REDIS_UNAVAILABLE as exc:
            log.error("mail_request_limit_unavailable", error=str(exc))
            raise Unavailable("Mail requests are temporarily unavailable; try again shortly") from exc
        if wait_ms:
            log.warning("mail_requests_throttled", scope=scope, client=client)
            raise TooManyRequests("Too many requests; try again later", math.ceil(wait_ms / 1000))


async def request_reset(email: str, *, client: str, limit: MailRequestLimit, settings: AuthSettings) -> None:
    """Send a reset mail if the account exists (never telling whether it does)."""
    await limit.admit(RESET_SCOPE, client)
    email, now = email.lower(), utcnow()
    async with db.transaction():
        user = await User.select(User.id).where(User.email == email).first().run()
        if await mail_tokens.issued_since(mail_tokens.RESET, email, now - MAIL_WINDOW) >= (
            settings.mail_account_limit
        ):
            return
        await mail_tokens.supersede(mail_tokens.RESET, email, now)
        token_id = await mail_tokens.issue(
            mail_tokens.RESET,
            user_id=user["id"] if user else None,
            email=email,
            now=now,
            secret=settings.secret,
        )
        await mail.enqueue(mail.PASSWORD_RESET, email, now, token_id=token_id)


async def confirm_reset(
    token: str, new_password: str, *, sessions: SessionService, passwords: Passwords
) -> str:
    """Set the new password, mark the address verified and revoke every session; returns the user id.
    400 for an unknown, used, expired or superseded token, or one for an address the user left."""
    if not await mail_tokens.is_redeemable(token, mail_tokens.RESET, utcnow()):
        raise BadRequest(INVALID_TOKEN)  # before hashing: a guessed token costs no password work
    new_hash = await passwords.hash(new_password)
    now = utcnow()
    async with db.transaction():
        used = await mail_tokens.redeem(token, mail_tokens.RESET, now)
        user = await _owner(used)
        await (
            User.update({User.password_hash: new_hash, User.email_verified: True, User.updated_at: now})
            .where(User.id == user["id"])
            .run()
        )
        uid = str(user["id"])
        revoked = await sessions.delete_all(uid)
        await mail.enqueue(mail.PASSWORD_CHANGED, user["email"], now)
        await sessions.forget(revoked)  # fails closed: Redis down rolls the reset back (503)
    await sessions.forget(revoked)
    log.info("password_reset", user_id=uid, sessions_revoked=len(revoked))
    return uid


async def _owner(used: dict[str, Any] | None) -> dict[str, Any]:
    """The user a redeemed token belongs to, if it still has the address the token was sent to."""
    if used is None:
        raise BadRequest(INVALID_TOKEN)
    user: dict[str, Any] | None = await User.select().where(User.id == used["user_id"]).first().run()
    if user is None or user["email"] != used["email"]:
        raise BadRequest(INVALID_TOKEN)  # raising rolls the redemption back with the rest
    return user


async def send_verification(user: dict[str, Any], now: Any, settings: AuthSettings) -> None:
    """Issue a verification token for the user's current address and mail it; inside a transaction."""
    token_id = await mail_tokens.issue(
        mail_tokens.VERIFY, user_id=user["id"], email=user["email"], now=now, secret=settings.secret
    )
    await mail.enqueue(mail.VERIFY_EMAIL, user["email"], now, token_id=token_id)


async def resend_verification(
    user_id: str, *, client: str, limit: MailRequestLimit, settings: AuthSettings
) -> None:
    """A new verification mail to the caller's address (409 when it is verified already)."""
    user = await User.select().where(User.id == uuid.UUID(user_id)).first().run()
    if user is None:
        raise Unauthorized("The session's account no longer exists")
    if user["email_verified"]:
        raise Conflict("The email address is already verified")
    await limit.admit(VERIFY_SCOPE, client)
    now = utcnow()
    async with db.transaction():
        recent = await mail_tokens.issued_since(mail_tokens.VERIFY, user["email"], now - MAIL_WINDOW)
        if recent >= settings.mail_account_limit:
            return
        await send_verification(user, now, settings)


async def confirm_verification(token: str) -> dict[str, Any]:
    """Mark the address verified; the user. 400 for an unknown, used or expired token, or one for
    an address the user no longer has."""
    now = utcnow()
    async with db.transaction():
        user = await _owner(await mail_tokens.redeem(token, mail_tokens.VERIFY, now))
        await (
            User.update({User.email_verified: True, User.updated_at: now}).where(User.id == user["id"]).run()
        )
    log.info("email_verified", user_id=str(user["id"]))
    return {**user, "email_verified": True, "updated_at": now}
