"""Time on the wire: RFC 3339, UTC, always with microseconds (docs/api.md, "Conventions")."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(value: datetime) -> str:
    """`2026-11-26T04:25:13.000000Z` — six fractional digits even when they are zero. A naive value
    is taken as UTC. (`isoformat` is C code: a third cheaper than `strftime`, and it writes four-digit
    years, as RFC 3339 requires, where `strftime` writes `1` for the year 1.)"""
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:-6] + "Z"
