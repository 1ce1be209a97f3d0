"""The auth service's tables: users, their sessions (Lucia model) and the transactional outbox."""

from __future__ import annotations

from piccolo.columns import JSON, UUID, ForeignKey, OnDelete, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table

from services.auth.db import DB


class User(Table, tablename="users", db=DB):
    id = UUID(primary_key=True)
    email = Varchar(length=254, unique=True)  # stored lowercased, so unique in any letter case
    name = Varchar(length=100, null=True, default=None)
    password_hash = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Session(Table, tablename="sessions", db=DB):
    id = Varchar(length=64, primary_key=True)  # hex SHA-256 of the token; the token is never stored
    user_id = ForeignKey(references=User, on_delete=OnDelete.cascade, index=True, null=False)
    created_at = Timestamptz()
    expires_at = Timestamptz(index=True)  # slides forward; never past created_at + the absolute lifetime


class Outbox(Table, tablename="outbox", db=DB):
    """Events written in the same transaction as the change they announce; the relay sends them."""

    id = Serial(primary_key=True)  # sending order
    event_type = Varchar(length=64)
    payload = JSON()
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None, index=True)
