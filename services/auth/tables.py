"""The auth service's tables: users, their sessions (Lucia model), the tokens sent in mails, and the
transactional outboxes (events for the Redis Stream, mails for SMTP)."""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    UUID,
    Boolean,
    ForeignKey,
    Integer,
    OnDelete,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class User(Table, tablename="users"):
    id = UUID(primary_key=True)
    email = Varchar(length=254, unique=True)  # stored lowercased, so unique in any letter case
    name = Varchar(length=100, null=True, default=None)
    password_hash = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()
    email_verified = Boolean(default=False)  # the address proved by a verification or reset token


class Session(Table, tablename="sessions"):
    id = Varchar(length=64, primary_key=True)  # hex SHA-256 of the token; the token is never stored
    user_id = ForeignKey(references=User, on_delete=OnDelete.cascade, index=True, null=False)
    created_at = Timestamptz()
    expires_at = Timestamptz(index=True)  # slides forward; never past created_at + the absolute lifetime
    user_agent = Varchar(length=256, null=True, default=None)  # the first 256 characters, as sent
    ip = Varchar(length=64, null=True, default=None)  # the client address the gateway saw


class Outbox(Table, tablename="outbox"):
    """Events written in the same transaction as the change they announce; the relay sends them."""

    id = Serial(primary_key=True)  # sending order
    event_type = Varchar(length=64)
    payload = JSON()
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None, index=True)


class MailToken(Table, tablename="mail_tokens"):
    """A token sent in a mail (password reset, email verification), stored only as its SHA-256.

    A reset request for an address with no account writes a row too (`user_id` null, never
    redeemable), so a request does the same work whether or not the account exists.
    """

    id = UUID(primary_key=True)  # the mail sender derives the token from it (mail_tokens.py)
    token_hash = Varchar(length=64, unique=True)  # hex SHA-256 of the token
    purpose = Varchar(length=16)  # "reset" or "verify"
    user_id = UUID(null=True, default=None, index=True)
    email = Varchar(length=254, index=True)  # the address the token was issued for
    created_at = Timestamptz()
    expires_at = Timestamptz(index=True)
    used_at = Timestamptz(null=True, default=None)  # used, or superseded by a newer reset token


class MailOutbox(Table, tablename="mail_outbox"):
    """Mails written in the same transaction as the change that asks for them; the sender sends them."""

    id = Serial(primary_key=True)
    kind = Varchar(length=32)
    recipient = Varchar(length=254)
    payload = JSON()  # {"tokenId": ...} for mails with a link; never the token itself
    created_at = Timestamptz()
    next_attempt_at = Timestamptz(index=True)  # also the claim: a sender pushes it forward while sending
    attempts = Integer(default=0)  # failed attempts the SMTP server answered with an error
    last_error = Text(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None, index=True)
    dead_at = Timestamptz(null=True, default=None)  # given up on: in the mail dead-letter stream


# Bound to the app's engine by its lifespan (services.auth.db.bound).
TABLES: tuple[type[Table], ...] = (User, Session, Outbox, MailToken, MailOutbox)
