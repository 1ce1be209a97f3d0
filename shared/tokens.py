"""Ids derived from secrets, and the unpadded URL-safe base64 every signed value uses."""

from __future__ import annotations

import base64
import hashlib


def session_id_of(token: str) -> str:
    """The session id stored and cached for a token: its SHA-256 (hex), so a leaked id is not a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def b64url(data: bytes) -> str:
    """URL-safe base64 without `=` padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """The inverse of `b64url` (raises binascii.Error / ValueError on malformed input)."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
