"""The canvas service's tables.

`canvas` holds the documents; `canvas_tag` repeats each canvas's tags one per row so that a tag
filter is an indexed lookup on SQLite and PostgreSQL alike (the `tags` array keeps their order).
`view_batch` remembers which view-buffer batches were applied (see view_counter.py); `processed_event` and
`deleted_user` make the user-deletion cascade idempotent and let creates for deleted users be refused.
The composite indexes for keyset pagination and each engine's full-text index over `search_text`
(search.py) are created in the migrations.
"""

from __future__ import annotations

from piccolo.columns import (
    UUID,
    Array,
    BigInt,
    Boolean,
    ForeignKey,
    OnDelete,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table


class Canvas(Table, tablename="canvas"):
    id = UUID(primary_key=True)
    title = Text()
    type = Text()
    code = Text()
    description = Text(default="")
    tags = Array(base_column=Text())
    user_id = UUID()
    is_public = Boolean(default=False)
    views = BigInt(default=0)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    version = BigInt(default=1)  # +1 with every change: the ETag
    search_text = Text(default="")  # the words search.py finds in title, description and tags


class CanvasTag(Table, tablename="canvas_tag"):
    canvas = ForeignKey(references=Canvas, on_delete=OnDelete.cascade, null=False)
    tag = Text()


class ViewBatch(Table, tablename="view_batch"):
    batch_id = Varchar(length=64, primary_key=True)
    applied_at = Timestamptz(index=True)


class ProcessedEvent(Table, tablename="processed_event"):
    event_id = Varchar(length=128, primary_key=True)
    processed_at = Timestamptz()


class DeletedUser(Table, tablename="deleted_user"):
    user_id = UUID(primary_key=True)
    deleted_at = Timestamptz()


# Bound to the app's engine by its lifespan (services.canvas.db.bound).
TABLES: tuple[type[Table], ...] = (Canvas, CanvasTag, ViewBatch, ProcessedEvent, DeletedUser)
