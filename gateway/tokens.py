"""The session token a client presents, and the `session` cookie the gateway sets (docs/api.md)."""

from __future__ import annotations

import re
from datetime import datetime

from shared.timeutil import utcnow

COOKIE_NAME = "session"
# Lucia tokens: 20 random bytes in lowercase base32 without padding.
_TOKEN = re.compile(r"[a-z2-7]{32}")


class MalformedToken(Exception):
    def __init__(self, from_cookie: bool) -> None:
        super().__init__("malformed session token")
        self.from_cookie = from_cookie


def _cookie_value(header: bytes, name: str) -> str | None:
    for part in header.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None


def presented_token(authorization: bytes | None, cookie: bytes | None) -> tuple[str | None, bool]:
    """(token, came from the cookie). `Authorization: Bearer` wins over the cookie; raises MalformedToken."""
    if authorization is not None:
        scheme, _, token = authorization.decode("latin-1").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
            raise MalformedToken(from_cookie=False)
        return token, False
    if cookie is not None:
        value = _cookie_value(cookie, COOKIE_NAME)
        if value:
            if not _TOKEN.fullmatch(value):
                raise MalformedToken(from_cookie=True)
            return value, True
    return None, False


def _attributes(secure: bool) -> str:
    return "; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")


def session_cookie(token: str, expires_at: datetime, *, secure: bool) -> str:
    """Set-Cookie value; Max-Age is the session's remaining lifetime."""
    max_age = max(0, int((expires_at - utcnow()).total_seconds()))
    return f"{COOKIE_NAME}={token}; Max-Age={max_age}" + _attributes(secure)


def cleared_cookie(*, secure: bool) -> str:
    return f"{COOKIE_NAME}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" + _attributes(secure)
