"""Keyset cursors: opaque, tamper-evident and bound to the listing's filters (docs/api.md, "Conventions").

A cursor is `base64url(JSON [createdAt, id, filterDigest]).base64url(HMAC-SHA256)`. The position is
the last item of the previous page; the digest names the listing and its filters, so a cursor used
with other filters is refused even though its signature is good.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime

import msgspec

from shared.errors import BadRequest
from shared.tokens import b64url, unb64url


class Position(msgspec.Struct, array_like=True, frozen=True):
    created_at: datetime
    id: uuid.UUID
    filters: str


def filter_digest(**filters: str | None) -> str:
    """A short digest of the listing's name and filters (None and absent are the same)."""
    canonical = msgspec.json.encode(sorted((k, v) for k, v in filters.items() if v is not None))
    return b64url(hashlib.sha256(canonical).digest()[:12])


class CursorCodec:
    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, b"canvas-verse/canvas-cursor/v1", hashlib.sha256).digest()

    def _mac(self, payload: str) -> str:
        return b64url(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16])

    def encode(self, position: Position) -> str:
        payload = b64url(msgspec.json.encode(position))
        return f"{payload}.{self._mac(payload)}"

    def decode(self, cursor: str, filters: str) -> Position:
        """The position of a cursor issued for these filters; BadRequest otherwise."""
        payload, _, mac = cursor.partition(".")
        if not mac or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise BadRequest("invalid cursor: malformed or tampered")
        try:
            position = msgspec.json.decode(unb64url(payload), type=Position)
        except (ValueError, msgspec.DecodeError) as exc:
            raise BadRequest("invalid cursor: malformed") from exc
        if position.filters != filters:
            raise BadRequest("invalid cursor: it was issued for other filters")
        return position
