"""What travels on the wire: request bodies (unknown fields and nulls refused) and responses."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from services.auth.sessions import SessionInfo
from shared.timeutil import rfc3339
from shared.validation import NO_NUL, full_match

# The WHATWG (HTML) definition of a valid email address; the length limit is checked separately.
EMAIL_PATTERN = full_match(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*"
)
Email = Annotated[str, msgspec.Meta(max_length=254, pattern=EMAIL_PATTERN)]
# Passwords are kept exactly as typed, U+0000 included: they are only hashed (argon2 takes their
# bytes with their length), never stored, so no pattern applies to them.
NewPassword = Annotated[str, msgspec.Meta(min_length=8, max_length=256)]
# A password being checked rather than set: any length up to the limit (a wrong one is 401/403).
GivenPassword = Annotated[str, msgspec.Meta(max_length=256)]
# Any text may be tried (an unknown email is 401), but it is looked up, so it must not hold U+0000.
LoginEmail = Annotated[str, msgspec.Meta(max_length=254, pattern=NO_NUL)]
Name = Annotated[str, msgspec.Meta(max_length=100, pattern=NO_NUL)]


class _Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class SignupBody(_Body):
    email: Email
    password: NewPassword
    name: Name | UnsetType = UNSET


class LoginBody(_Body):
    email: LoginEmail
    password: GivenPassword


class UpdateMeBody(_Body):
    name: Name | UnsetType = UNSET
    email: Email | UnsetType = UNSET
    current_password: GivenPassword | UnsetType = UNSET


class ChangePasswordBody(_Body):
    current_password: GivenPassword
    new_password: NewPassword


class DeleteMeBody(_Body):
    password: GivenPassword


# A token from a mail link. Any text up to this length is looked up by its hash (a wrong one is 400).
MailToken = Annotated[str, msgspec.Meta(max_length=256)]


class PasswordResetBody(_Body):
    email: Email


class PasswordResetConfirmBody(_Body):
    token: MailToken
    new_password: NewPassword


class EmailVerificationConfirmBody(_Body):
    token: MailToken


class ValidateSessionBody(_Body):
    session_id: str  # a malformed id is simply not found (404)


class ExistingUsersBody(_Body):
    user_ids: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]


class UserOut(msgspec.Struct, rename="camel"):
    id: str
    email: str
    name: str | None
    email_verified: bool
    created_at: str
    updated_at: str


class AuthOut(msgspec.Struct, rename="camel"):
    user: UserOut
    token: str
    expires_at: str


class SessionOut(msgspec.Struct, rename="camel"):
    id: str
    expires_at: str
    created_at: str
    current: bool
    user_agent: str | None
    ip: str | None


class SessionList(msgspec.Struct):
    items: list[SessionOut]


class ValidatedSession(msgspec.Struct, rename="camel"):
    user_id: str
    session_id: str
    expires_at: str
    renewed: bool


class ExistingUsers(msgspec.Struct):
    existing: list[str]


def user_out(row: dict[str, Any]) -> UserOut:
    return UserOut(
        id=str(row["id"]),
        email=row["email"],
        name=row["name"],
        email_verified=bool(row["email_verified"]),
        created_at=rfc3339(row["created_at"]),
        updated_at=rfc3339(row["updated_at"]),
    )


def session_out(info: SessionInfo, current_id: str) -> SessionOut:
    return SessionOut(
        id=info.id,
        expires_at=rfc3339(info.expires_at),
        created_at=rfc3339(info.created_at),
        current=info.id == current_id,
        user_agent=info.user_agent,
        ip=info.ip,
    )
