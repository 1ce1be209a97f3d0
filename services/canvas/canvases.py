"""Canvases: create, read (counting a view), change, delete, and the keyset-paginated listings.

Visibility (docs/api.md): a private canvas exists only for its owner (404 to anyone else, so neither its
existence nor its views leak); a public canvas is readable by anyone and writable by its owner only
(403 to others). `uid` is the caller's user id from the internal credential, None when anonymous.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from msgspec import UNSET
from piccolo.columns import Column
from piccolo.columns.combination import WhereRaw
from piccolo.engine.postgres import PostgresEngine

from services.canvas import db, schemas, search
from services.canvas.cursors import CursorCodec, Position, filter_digest
from services.canvas.etags import IfMatch, PreconditionFailed, etag
from services.canvas.read_cache import HIDDEN, Miss, ReadCache
from services.canvas.tables import Canvas, CanvasTag, DeletedUser
from services.canvas.view_counter import ViewCounter
from shared.db import RowByKey
from shared.errors import Forbidden, Invalid, NotFound, Unavailable
from shared.timeutil import rfc3339, utcnow

_STORED = [column for column in Canvas._meta.columns if column is not Canvas.search_text]
SUMMARY_COLUMNS = [column for column in _STORED if column is not Canvas.code]
_by_id = RowByKey(Canvas, Canvas.id, _STORED)  # a read the cache missed (issue 18)
# The search condition of each engine (see search.py): PostgreSQL's GIN-indexed tsvector column,
# SQLite's FTS5 table; the engine is the one the tables are bound to.
_PG_MATCHES = "search_vector @@ ({}::text)::tsquery"
_SQLITE_MATCHES = (
    "canvas.id IN (SELECT k.canvas_id FROM canvas_fts"
    " JOIN canvas_search_key k ON k.key = canvas_fts.rowid WHERE canvas_fts MATCH {})"
)


def _postgres() -> bool:
    return isinstance(db.engine(), PostgresEngine)


def _matches(terms: list[str]) -> WhereRaw:
    if _postgres():
        return WhereRaw(_PG_MATCHES, search.tsquery(terms))
    return WhereRaw(_SQLITE_MATCHES, search.fts5_match(terms))


def _fields(row: dict[str, Any], views: int) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "type": row["type"],
        "description": row["description"],
        "tags": list(row["tags"]),
        "user_id": str(row["user_id"]),
        "is_public": bool(row["is_public"]),
        "views": views,
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
    }


def _canvas(row: dict[str, Any], views: int) -> schemas.Canvas:
    return schemas.Canvas(code=row["code"], **_fields(row, views))


class Tagged(NamedTuple):
    """A canvas answer and its ETag."""

    canvas: schemas.Canvas
    etag: str


def _tagged(row: dict[str, Any], views: int) -> Tagged:
    return Tagged(_canvas(row, views), etag(row["id"], row["version"]))


def _check_code(code: str) -> None:
    if len(code.encode()) > schemas.CODE_MAX_BYTES:
        raise Invalid("code", f"must be at most {schemas.CODE_MAX_BYTES} bytes in UTF-8")


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags))


async def _visible(canvas_id: uuid.UUID, uid: uuid.UUID | None) -> dict[str, Any]:
    row = await _by_id(canvas_id)
    if row is None or not (row["is_public"] or str(row["user_id"]) == str(uid)):
        raise NotFound("canvas not found")
    return row


async def _owned(canvas_id: uuid.UUID, uid: uuid.UUID) -> dict[str, Any]:
    row = await _visible(canvas_id, uid)
    if str(row["user_id"]) != str(uid):
        raise Forbidden("only the owner may change this canvas")
    return row


async def create(uid: uuid.UUID, data: schemas.CanvasCreate) -> Tagged:
    _check_code(data.code)
    now = utcnow()
    row = Canvas(
        id=uuid.uuid4(),
        title=data.title,
        type=data.type,
        code=data.code,
        description=data.description,
        tags=_unique(data.tags),
        user_id=uid,
        is_public=data.is_public,
        views=0,
        created_at=now,
        updated_at=now,
        version=1,
        search_text=search.index_text(data.title, data.description, data.tags),
    )
    async with db.transaction():
        await _refuse_deleted(uid)
        await Canvas.insert(row).run()
        await _insert_tags(row.id, row.tags)
    try:
        # On PostgreSQL a cascade may have marked the user deleted after our check and then missed
        # our uncommitted row; its mark is committed before it deletes, so looking again now settles it.
        await _refuse_deleted(uid)
    except Forbidden:
        await Canvas.delete().where(Canvas.id == row.id).run()
        raise
    return _tagged(row.to_dict(), 0)


async def _refuse_deleted(uid: uuid.UUID) -> None:
    if await DeletedUser.exists().where(DeletedUser.user_id == uid).run():
        raise Forbidden("this user has been deleted")


async def _insert_tags(canvas_id: uuid.UUID, tags: list[str]) -> None:
    if tags:
        await CanvasTag.insert(*(CanvasTag(canvas=canvas_id, tag=tag) for tag in tags)).run()


async def read(cache: ReadCache, canvas_id: uuid.UUID, uid: uuid.UUID | None) -> Tagged:
    """GET: the canvas with one more view counted; from the read cache when it holds the canvas."""
    found = await cache.lookup(canvas_id, uid) if cache.enabled else None
    if isinstance(found, tuple):
        return Tagged(*found)
    if found is HIDDEN:
        raise NotFound("canvas not found")
    row = await _visible(canvas_id, uid)
    seen = await cache.views.count_view(canvas_id)
    if str(canvas_id) not in seen.totals:  # deleted since we read it
        raise NotFound("canvas not found")
    tagged = _tagged(row, seen.totals[str(canvas_id)])
    if isinstance(found, Miss):
        await cache.fill(found, tagged.canvas, tagged.etag, seen)
    return tagged


async def check_visible(canvas_id: uuid.UUID, uid: uuid.UUID | None) -> str:
    """HEAD: 200 or 404 as GET would answer, counting nothing; the ETag."""
    row = await _visible(canvas_id, uid)
    return etag(row["id"], row["version"])


async def _gone_or_changed(canvas_id: uuid.UUID) -> Exception:
    """Why a conditional write touched no row: the canvas is gone (404) or its version moved on (412)."""
    if await Canvas.exists().where(Canvas.id == canvas_id).run():
        return PreconditionFailed()
    return NotFound("canvas not found")


async def update(
    cache: ReadCache,
    canvas_id: uuid.UUID,
    uid: uuid.UUID,
    data: schemas.CanvasUpdate,
    if_match: IfMatch | None = None,
) -> Tagged:
    """PATCH. With If-Match, the version compare is part of the UPDATE itself: of two writers holding
    the same ETag, the database lets exactly one change the row; the other matches no row (412)."""
    changes: dict[str, Any] = {
        name: value for name in data.__struct_fields__ if (value := getattr(data, name)) is not UNSET
    }
    if data.code is not UNSET:
        _check_code(data.code)
    if data.tags is not UNSET:
        changes["tags"] = _unique(data.tags)
    async with db.transaction():
        row = await _owned(canvas_id, uid)
        if not changes:  # nothing to write: the precondition is checked against the row just read
            if if_match is not None:
                if_match.check(canvas_id, row["version"])
        else:
            await _write(row, changes, if_match, tags_changed=data.tags is not UNSET)
    if changes:
        await cache.forget([canvas_id])
    return await _answer(cache, row)


def _version_condition(canvas_id: uuid.UUID, if_match: IfMatch | None) -> Any:
    """The WHERE term that makes a write conditional on If-Match (None: unconditional)."""
    if if_match is None or if_match.any:  # `*`: the canvas exists, which the write itself requires
        return None
    versions = if_match.versions(canvas_id)
    if not versions:
        raise PreconditionFailed
    return Canvas.version.is_in(versions)


async def _write(
    row: dict[str, Any], changes: dict[str, Any], if_match: IfMatch | None, *, tags_changed: bool
) -> None:
    canvas_id = uuid.UUID(str(row["id"]))
    changes["updated_at"] = utcnow()
    if {"title", "description", "tags"} & changes.keys():
        merged = {**row, **changes}
        changes["search_text"] = search.index_text(merged["title"], merged["description"], merged["tags"])
    values: dict[Column | str, Any] = {Canvas.version: Canvas.version + 1}
    values.update(changes)
    query = Canvas.update(values).where(Canvas.id == canvas_id)
    if (condition := _version_condition(canvas_id, if_match)) is not None:
        query = query.where(condition)
    written = await query.returning(Canvas.version).run()
    if not written:
        raise await _gone_or_changed(canvas_id)
    row.update(changes, version=written[0]["version"])
    if tags_changed:
        await CanvasTag.delete().where(CanvasTag.canvas == canvas_id).run()
        await _insert_tags(canvas_id, row["tags"])


async def _answer(cache: ReadCache, row: dict[str, Any]) -> Tagged:
    try:
        current = (await cache.views.current([row["id"]])).get(str(row["id"]), row["views"])
    except Unavailable:  # the change is committed: answer it, with the views flushed so far
        current = row["views"]
    return _tagged(row, current)


async def delete(
    cache: ReadCache, canvas_id: uuid.UUID, uid: uuid.UUID, if_match: IfMatch | None = None
) -> None:
    """DELETE; with If-Match, the version compare is part of the DELETE statement."""
    async with db.transaction():
        await _owned(canvas_id, uid)
        query = Canvas.delete().where(Canvas.id == canvas_id)
        if (condition := _version_condition(canvas_id, if_match)) is not None:
            query = query.where(condition)
        if not await query.returning(Canvas.id).run():
            raise await _gone_or_changed(canvas_id)
    await cache.forget([canvas_id])


@dataclass(frozen=True)
class Listing:
    """Which canvases a listing shows; `public_only` is false only for the owner's own listing."""

    public_only: bool
    owner: uuid.UUID | None = None
    type: str | None = None
    tag: str | None = None
    q: str | None = None

    def digest(self) -> str:
        return filter_digest(
            public_only="1" if self.public_only else None,
            owner=str(self.owner) if self.owner else None,
            type=self.type,
            tag=self.tag,
            q=self.q,
        )

    def terms(self) -> list[str]:
        """The words of `q` (none: `q` absent, or without any word, which matches every canvas)."""
        return search.words(self.q) if self.q is not None else []

    def conditions(self) -> list[Any]:
        """The filters but `q`."""
        found: list[Any] = []
        if self.public_only:
            found.append(Canvas.is_public.eq(True))
        if self.owner is not None:
            found.append(Canvas.user_id == self.owner)
        if self.type is not None:
            found.append(Canvas.type == self.type)
        if self.tag is not None:
            found.append(Canvas.id.is_in(CanvasTag.select(CanvasTag.canvas).where(CanvasTag.tag == self.tag)))
        return found


# SQLite: how many canvases of the listing's order a search examines one by one before it asks FTS5.
SCAN_WINDOW = 500


def _in_order(listing: Listing, after: tuple[datetime, uuid.UUID] | None, *columns: Any) -> Any:
    """The listing's canvases (`q` aside) newest first, after a position."""
    query = Canvas.select(*columns).order_by(Canvas.created_at, Canvas.id, ascending=False)
    for condition in listing.conditions():
        query = query.where(condition)
    if after is not None:
        at, last = after
        # `created_at <= c` bounds the index range; the OR breaks ties on id.
        query = query.where((Canvas.created_at <= at) & ((Canvas.created_at < at) | (Canvas.id < last)))
    return query


async def _search_sqlite(
    listing: Listing, terms: list[str], after: tuple[datetime, uuid.UUID] | None, wanted: int, window: int
) -> list[dict[str, Any]]:
    """The first `wanted` matches after `after`, on SQLite.

    SQLite's planner knows nothing of an FTS5 match's size, so the plan is chosen here, as
    PostgreSQL's planner does from its statistics: the next `window` canvases of the listing's own
    order are examined one by one (their stored words, `instr` on `search_text`, the same rule as the
    index); a common word fills the page within a few rows. Only if the window holds too few matches
    (a rare word) does FTS5 give the matches older than the window (`_fts_beyond`), which are few.
    Every page, deep or not, costs at most one window plus the FTS5 matches beyond it.
    """
    edge = await _in_order(listing, after, Canvas.created_at, Canvas.id).offset(window - 1).limit(1).run()
    scan = _in_order(listing, after, *SUMMARY_COLUMNS)
    *whole, last = terms
    for term in whole:
        scan = scan.where(WhereRaw("instr(' ' || search_text || ' ', {}) > 0", f" {term} "))
    scan = scan.where(WhereRaw("instr(' ' || search_text, {}) > 0", f" {last}"))
    if edge:
        at, last_id = edge[0]["created_at"], edge[0]["id"]
        scan = scan.where((Canvas.created_at >= at) & ((Canvas.created_at > at) | (Canvas.id >= last_id)))
    rows: list[dict[str, Any]] = await scan.limit(wanted).run()
    if len(rows) < wanted and edge:
        rows += await _fts_beyond(listing, terms, (at, last_id), wanted - len(rows))
    return rows


_SUMMARY_SQL = ", ".join(f"canvas.{column._meta.db_column_name}" for column in SUMMARY_COLUMNS)


async def _fts_beyond(
    listing: Listing, terms: list[str], after: tuple[datetime, uuid.UUID], wanted: int
) -> list[dict[str, Any]]:
    """SQLite: the first `wanted` FTS5 matches after a position, driven by the match list.

    Each canvas of the match is fetched by its primary key, then the matches are sorted: a cost in
    the number of matches, whatever the depth. The unary `+` keeps SQLite's planner off the other
    indexes (it would walk the listing's order index to the end to avoid a sort of a few rows).
    """
    at, last = after
    sql = [f"SELECT {_SUMMARY_SQL} FROM canvas WHERE {_SQLITE_MATCHES}"]  # noqa: S608 - no user input in the SQL
    args: list[Any] = [search.fts5_match(terms)]
    if listing.public_only:
        sql.append("+canvas.is_public = 1")
    if listing.owner is not None:
        sql.append("+canvas.user_id = {}")
        args.append(listing.owner)
    if listing.type is not None:
        sql.append("+canvas.type = {}")
        args.append(listing.type)
    if listing.tag is not None:
        sql.append("+canvas.id IN (SELECT canvas FROM canvas_tag WHERE tag = {})")
        args.append(listing.tag)
    sql.append("+canvas.created_at <= {} AND (+canvas.created_at < {} OR +canvas.id < {})")
    args += [at, at, last]
    query = " AND ".join(sql) + " ORDER BY +canvas.created_at DESC, +canvas.id DESC LIMIT {}"
    return await Canvas.raw(query, *args, wanted).run()  # type: ignore[no-any-return]


async def list_canvases(
    views: ViewCounter,
    cursors: CursorCodec,
    listing: Listing,
    *,
    limit: int,
    cursor: str | None,
    window: int = SCAN_WINDOW,
) -> schemas.CanvasPage:
    """Newest first by (createdAt, id); one page after the cursor's position."""
    digest = listing.digest()
    after = None
    if cursor is not None:
        position = cursors.decode(cursor, digest)
        after = (position.created_at, position.id)
    terms = listing.terms()
    if terms and not _postgres():
        rows = await _search_sqlite(listing, terms, after, limit + 1, window)
    else:
        query = _in_order(listing, after, *SUMMARY_COLUMNS)
        if terms:
            query = query.where(_matches(terms))
        rows = await query.limit(limit + 1).run()
    page = rows[:limit]
    counts = await views.current([row["id"] for row in page])
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = cursors.encode(Position(last["created_at"], uuid.UUID(str(last["id"])), digest))
    return schemas.CanvasPage(
        items=[
            schemas.CanvasSummary(**_fields(row, counts.get(str(row["id"]), row["views"]))) for row in page
        ],
        next_cursor=next_cursor,
    )
