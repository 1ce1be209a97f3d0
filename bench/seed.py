"""Bulk data for the scenarios that need many canvases, written straight into the canvas database.

Rows are stored exactly as the canvas service stores them: on SQLite through Piccolo's own value
adapters (imported below: UUIDs and timestamps as text, arrays as JSON), on PostgreSQL with COPY.
Seeded canvases have no tags, so `canvas_tag` needs no rows. On SQLite the inserts fire the
triggers that fill the FTS5 table; on PostgreSQL the generated tsvector column and its GIN index
follow the COPY.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import piccolo.engine.sqlite  # noqa: F401 - registers Piccolo's sqlite3 adapters for the inserts below

from bench.api import CODE
from bench.databases import RawDB
from services.canvas.search import index_text
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


async def canvases(
    db: RawDB,
    owner: str,
    count: int,
    *,
    public: bool,
    label: str = "Seeded",
    describe: Callable[[int], str] | None = None,
) -> None:
    """`count` canvases of `owner`, created one millisecond apart (microseconds never zero), oldest first.

    With `describe`, canvas i gets `describe(i)` as its description and, as the service writes them,
    the words of its title and description (`search_text`), so that `q=` finds it.
    """
    owner_id = uuid.UUID(owner)
    start = utcnow() - timedelta(days=2)
    columns = [*COLUMNS, "search_text"] if describe else COLUMNS
    for first in range(0, count, CHUNK):
        rows: list[tuple[object, ...]] = []
        for i in range(first, min(count, first + CHUNK)):
            created = start + timedelta(milliseconds=i, microseconds=7)
            title, description = f"{label} canvas {i}", describe(i) if describe else ""
            row: tuple[object, ...] = (
                uuid.uuid4(),
                title,
                "p5js",
                CODE,
                description,
                [],
                owner_id,
                public,
                0,
                created,
                created,
            )
            rows.append((*row, index_text(title, description, [])) if describe else row)
        await db.insert_many("canvas", columns, rows)
