"""Bulk data for the scenarios that need many canvases, written straight into the canvas database.

Rows are stored exactly as the canvas service stores them: on SQLite through Piccolo's own value
adapters (imported below: UUIDs and timestamps as text, arrays as JSON), on PostgreSQL with COPY.
Seeded canvases have no tags, so `canvas_tag` needs no rows.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import piccolo.engine.sqlite  # noqa: F401 - registers Piccolo's sqlite3 adapters for the inserts below

from bench.api import CODE
from bench.databases import RawDB
from shared.timeutil import utcnow

COLUMNS = [
    "id",
    "title",
    "type",
    "code",
    "description",
    "tags",
    "user_id",
    "is_public",
    "views",
    "created_at",
    "updated_at",
]
CHUNK = 5_000


async def canvases(db: RawDB, owner: str, count: int, *, public: bool, label: str = "Seeded") -> None:
    """`count` canvases of `owner`, created one millisecond apart (microseconds never zero), oldest first."""
    owner_id = uuid.UUID(owner)
    start = utcnow() - timedelta(days=2)
    for first in range(0, count, CHUNK):
        rows: list[tuple[object, ...]] = []
        for i in range(first, min(count, first + CHUNK)):
            created = start + timedelta(milliseconds=i, microseconds=7)
            rows.append(
                (
                    uuid.uuid4(),
                    f"{label} canvas {i}",
                    "p5js",
                    CODE,
                    "",
                    [],
                    owner_id,
                    public,
                    0,
                    created,
                    created,
                )
            )
        await db.insert_many("canvas", COLUMNS, rows)
