"""Time on the wire: RFC 3339, UTC, always with microseconds (docs/api.md, "Conventions")."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-11-26T04:25:13.000000Z` — six fractional digits even when they are zero."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
