"""Accounts: signup, login, profile and password changes, and deletion (with its outbox event)."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import asyncpg
import structlog
from msgspec import UNSET

from services.auth import db, mail, outbox, recovery
from services.auth.passwords import Passwords
from services.auth.schemas import UpdateMeBody
from services.auth.sessions import SessionService
from services.auth.settings import AuthSettings
from services.auth.tables import User
from services.auth.throttle import CURRENT_PASSWORD, LoginThrottle
from shared.db import RowByKey
from shared.errors import Conflict, Forbidden, Unauthorized
from shared.events import UserDeleted
from shared.timeutil import utcnow

log = structlog.get_logger()

LOGIN_FAILED = "Invalid email or password"  # the same for an unknown email and a wrong password
EMAIL_TAKEN = "An account with this email already exists"


def _is_unique_violation(exc: Exception) -> bool:
    return isinstance(exc, asyncpg.UniqueViolationError) or (
        isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)
    )


_by_id = RowByKey(User, User.id)  # every `GET /api/users/me` (issue 18)


async def get(user_id: str) -> dict[str, Any] | None:
    try:
        key = uuid.UUID(user_id)
    except ValueError:
        return None
    return await _by_id(key)


async def current(user_id: str) -> dict[str, Any]:
    """The caller's account; 401 when it no longer exists (the session died with it)."""
    row = await get(user_id)
    if row is None:
        raise Unauthorized("The session's account no longer exists")
    return row


async def _email_taken(email: str) -> bool:
    return bool(await User.exists().where(User.email == email).run())


async def signup(
    email: str,
    password: str,
    name: str | None,
    *,
    client: str,
    throttle: LoginThrottle,
    settings: AuthSettings,
    passwords: Passwords,
) -> dict[str, Any]:
    """A new account (409 when the email is taken; 429 when the client signs up too much), with its
    verification mail written in the same transaction."""
    counted = await throttle.admit_signup(client)
    try:
        return await _signup(email, password, name, settings, passwords)
    finally:
        if counted:
            await throttle.signup_done(client)


async def _signup(
    email: str, password: str, name: str | None, settings: AuthSettings, passwords: Passwords
) -> dict[str, Any]:
    email = email.lower()
    if await _email_taken(email):
        raise Conflict(EMAIL_TAKEN)
    now = utcnow()
    row = {
        "id": uuid.uuid4(),
        "email": email,
        "name": name,
        "password_hash": await passwords.hash(password),
        "created_at": now,
        "updated_at": now,
        "email_verified": False,
    }
    try:
        async with db.transaction():
            await User.insert(
                User(
                    id=row["id"],
                    email=email,
                    name=name,
                    password_hash=row["password_hash"],
                    created_at=now,
                    updated_at=now,
                    email_verified=False,
                )
            ).run()
            await recovery.send_verification(row, now, settings)
    except Exception as exc:
        if _is_unique_violation(exc):  # a concurrent signup took the email first
            raise Conflict(EMAIL_TAKEN) from exc
        raise
    log.info("user_signed_up", user_id=str(row["id"]))
    return row


async def login(
    email: str, password: str, *, client: str, throttle: LoginThrottle, passwords: Passwords
) -> dict[str, Any]:
    """The account whose credentials these are, or 401 (429 when throttled)."""
    email = email.lower()
    await throttle.admit(email, client)
    user, failed = None, None  # None: no answer (hashing at capacity, an error) counts as nothing
    try:
        row = await User.select().where(User.email == email).first().run()
        if await passwords.verify(row["password_hash"] if row else None, password):
            user = row
        failed = user is None
    finally:
        await throttle.settle(email, client, failed=failed)
    if user is None:
        raise Unauthorized(LOGIN_FAILED)
    if passwords.needs_rehash(user["password_hash"]):
        user["password_hash"] = await passwords.hash(password)
        await User.update({User.password_hash: user["password_hash"]}).where(User.id == user["id"]).run()
        log.info("password_rehashed", user_id=str(user["id"]))
    return user


async def _check_current_password(
    user: dict[str, Any],
    password: str,
    *,
    client: str,
    throttle: LoginThrottle,
    passwords: Passwords,
    wrong: str,
) -> None:
    """403 (`wrong`) unless `password` is the user's. Guesses are throttled like logins (429), on
    counts of their own (throttle.py says why).

    Unlike login this fails open when Redis is down: only a session holder gets here, and a user
    must be able to change the password or delete the account during an outage.
    """
    counted = await throttle.admit(user["email"], client, scope=CURRENT_PASSWORD, fail_open=True)
    correct: bool | None = None
    try:
        correct = await passwords.verify(user["password_hash"], password)
    finally:
        if counted:
            failed = None if correct is None else not correct
            await throttle.settle(user["email"], client, failed=failed, scope=CURRENT_PASSWORD)
    if not correct:
        raise Forbidden(wrong)


async def update_profile(
    user_id: str,
    body: UpdateMeBody,
    *,
    client: str,
    throttle: LoginThrottle,
    settings: AuthSettings,
    passwords: Passwords,
) -> dict[str, Any]:
    """Change the name and/or the email. A new email is unverified: a verification mail goes to it
    and a notice to the old one, in the transaction of the change."""
    user = await current(user_id)
    changes: dict[Any, Any] = {}
    if body.name is not UNSET and body.name != user["name"]:
        changes[User.name] = body.name
    if body.email is not UNSET and body.email.lower() != user["email"]:
        if body.current_password is UNSET:
            raise Forbidden("currentPassword is required to change the email")
        await _check_current_password(
            user,
            body.current_password,
            client=client,
            throttle=throttle,
            passwords=passwords,
            wrong="currentPassword is wrong",
        )
        if await _email_taken(body.email.lower()):
            raise Conflict(EMAIL_TAKEN)
        changes[User.email] = body.email.lower()
        changes[User.email_verified] = False
    if not changes:
        return user
    now = changes[User.updated_at] = utcnow()
    updated = {**user, **{column._meta.name: value for column, value in changes.items()}}
    try:
        async with db.transaction():
            await User.update(changes).where(User.id == user["id"]).run()
            if User.email in changes:
                await recovery.send_verification(updated, now, settings)
                await mail.enqueue(mail.EMAIL_CHANGED, user["email"], now)
    except Exception as exc:
        if _is_unique_violation(exc):
            raise Conflict(EMAIL_TAKEN) from exc
        raise
    return updated


async def change_password(
    user_id: str,
    current_password: str,
    new_password: str,
    *,
    keep_session: str,
    sessions: SessionService,
    client: str,
    throttle: LoginThrottle,
    passwords: Passwords,
) -> None:
    """Set a new password, revoke every other session of the user and send a notice."""
    user = await current(user_id)
    await _check_current_password(
        user,
        current_password,
        client=client,
        throttle=throttle,
        passwords=passwords,
        wrong="currentPassword is wrong",
    )
    new_hash = await passwords.hash(new_password)
    now = utcnow()
    async with db.transaction():
        await (
            User.update({User.password_hash: new_hash, User.updated_at: now})
            .where(User.id == user["id"])
            .run()
        )
        revoked = await sessions.delete_all(user_id, keep=keep_session)
        await mail.enqueue(mail.PASSWORD_CHANGED, user["email"], now)
        await sessions.forget(revoked)  # fails closed: Redis down rolls the change back (503)
    await sessions.forget(revoked)
    log.info("password_changed", user_id=user_id, sessions_revoked=len(revoked))


async def delete_account(
    user_id: str,
    password: str,
    *,
    sessions: SessionService,
    client: str,
    throttle: LoginThrottle,
    passwords: Passwords,
) -> None:
    """Delete the user and their sessions, and record `user.deleted`, in one transaction."""
    user = await current(user_id)
    await _check_current_password(
        user, password, client=client, throttle=throttle, passwords=passwords, wrong="password is wrong"
    )
    uid, now = str(user["id"]), utcnow()
    async with db.transaction():
        revoked = await sessions.delete_all(uid)
        deleted = await User.delete().where(User.id == user["id"]).returning(User.id).run()
        if not deleted:  # a concurrent deletion won; it wrote the event
            raise Unauthorized("The session's account no longer exists")
        await outbox.add(UserDeleted(event_id=str(uuid.uuid4()), user_id=uid, occurred_at=now), now)
        await sessions.forget(revoked)  # fails closed: Redis down rolls the deletion back (503)
    await sessions.forget(revoked)
    log.info("user_deleted", user_id=uid, sessions_revoked=len(revoked))


async def existing(user_ids: list[uuid.UUID]) -> list[str]:
    """The subset of these ids whose users still exist."""
    rows = await User.select(User.id).where(User.id.is_in(user_ids)).run()
    return [str(row["id"]) for row in rows]
