"""Time on the wire (docs/api.md, "Conventions"): RFC 3339, UTC, always six fractional digits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from shared.timeutil import rfc3339


def test_times_are_written_in_utc_with_microseconds_and_a_z() -> None:
    assert rfc3339(datetime(2026, 11, 26, 4, 25, 13, tzinfo=UTC)) == "2026-11-26T04:25:13.000000Z"
    assert rfc3339(datetime(2026, 11, 26, 4, 25, 13, 7, tzinfo=UTC)) == "2026-11-26T04:25:13.000007Z"
    # Another offset is converted; a naive value is taken as UTC.
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 11, 26, 5, 25, 13, tzinfo=paris)) == "2026-11-26T04:25:13.000000Z"
    assert rfc3339(datetime(2026, 11, 26, 4, 25, 13)) == "2026-11-26T04:25:13.000000Z"
    # Four-digit years, as RFC 3339's grammar has them.
    assert rfc3339(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000000Z"
    # What the databases give back: Piccolo's SQLite converter and asyncpg both use timezone.utc.
    utc = timezone.utc  # noqa: UP017 - the name they use, on purpose
    assert rfc3339(datetime(2026, 1, 1, tzinfo=utc)) == "2026-01-01T00:00:00.000000Z"
