"""Search and safe edits: `canvas.search_text` with each engine's full-text index, and `canvas.version`.

- `search_text` holds the canvas's words as services/canvas/search.py computes them; this migration
  fills it for the canvases that exist already (the service writes it with every create and change).
- PostgreSQL: a GIN index on the words as a tsvector (the query in canvases.py uses the same expression).
- SQLite: an FTS5 table over the words, kept in step by triggers on `canvas` (same transaction as the
  write). FTS5 rows are keyed by `canvas_search_key.key`, an INTEGER PRIMARY KEY, because the rowid
  of `canvas` itself (a UUID primary key) may change on VACUUM.
- `version` counts the changes of a canvas (the ETag); existing canvases start at 1.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns import UUID, Array, Text
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine
from piccolo.table import Table

from services.canvas.search import index_text

ID = "2026-12-04T17:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "canvas search index and version"
BATCH = 1000

PG_INDEX = "CREATE INDEX canvas_search ON canvas USING gin (array_to_tsvector(string_to_array(search_text, ' ')))"
SQLITE_DDL = [
    "CREATE TABLE canvas_search_key (key INTEGER PRIMARY KEY, canvas_id UUID NOT NULL UNIQUE)",
    # `ascii`: splits on ASCII separators only (the words hold none), keeps non-ASCII characters.
    "CREATE VIRTUAL TABLE canvas_fts USING fts5(words, tokenize = 'ascii', detail = 'none', prefix = '2 3')",
    """CREATE TRIGGER canvas_search_insert AFTER INSERT ON canvas BEGIN
         INSERT INTO canvas_search_key (canvas_id) VALUES (new.id);
         INSERT INTO canvas_fts (rowid, words) VALUES (last_insert_rowid(), new.search_text);
       END""",
    """CREATE TRIGGER canvas_search_update AFTER UPDATE OF search_text ON canvas BEGIN
         UPDATE canvas_fts SET words = new.search_text
           WHERE rowid = (SELECT key FROM canvas_search_key WHERE canvas_id = new.id);
       END""",
    """CREATE TRIGGER canvas_search_delete AFTER DELETE ON canvas BEGIN
         DELETE FROM canvas_fts WHERE rowid = (SELECT key FROM canvas_search_key WHERE canvas_id = old.id);
         DELETE FROM canvas_search_key WHERE canvas_id = old.id;
       END""",
    "INSERT INTO canvas_search_key (canvas_id) SELECT id FROM canvas",
    "INSERT INTO canvas_fts (rowid, words) SELECT key, '' FROM canvas_search_key",
]
SQLITE_DROP = [
    "DROP TRIGGER canvas_search_insert",
    "DROP TRIGGER canvas_search_update",
    "DROP TRIGGER canvas_search_delete",
    "DROP TABLE canvas_fts",
    "DROP TABLE canvas_search_key",
]


class Canvas(Table, tablename="canvas"):
    id = UUID(primary_key=True)
    title = Text()
    description = Text()
    tags = Array(base_column=Text())


async def _fill() -> None:
    """search_text for every existing canvas, BATCH rows per statement, in id order."""
    engine = engine_finder()
    postgres = isinstance(engine, PostgresEngine)
    last = None
    while True:
        query = Canvas.select(Canvas.id, Canvas.title, Canvas.description, Canvas.tags)
        if last is not None:
            query = query.where(Canvas.id > last)
        rows = await query.order_by(Canvas.id).limit(BATCH).run()
        if not rows:
            return
        texts = [(row["id"], index_text(row["title"], row["description"], row["tags"])) for row in rows]
        if postgres:
            await Canvas.raw(
                "UPDATE canvas SET search_text = v.words FROM unnest({}::uuid[], {}::text[]) AS v(id, words)"
                " WHERE canvas.id = v.id",
                [canvas_id for canvas_id, _ in texts],
                [text for _, text in texts],
            ).run()
        else:
            async with engine.transaction():
                for canvas_id, text in texts:
                    await Canvas.raw("UPDATE canvas SET search_text = {} WHERE id = {}", text, canvas_id).run()
        last = rows[-1]["id"]


async def forwards_raw() -> None:
    engine = engine_finder()
    await engine.run_ddl("ALTER TABLE canvas ADD COLUMN version BIGINT NOT NULL DEFAULT 1")
    await engine.run_ddl("ALTER TABLE canvas ADD COLUMN search_text TEXT NOT NULL DEFAULT ''")
    if isinstance(engine, PostgresEngine):
        await _fill()
        await engine.run_ddl(PG_INDEX)
    else:
        for statement in SQLITE_DDL:
            await engine.run_ddl(statement)
        await _fill()


async def backwards_raw() -> None:
    engine = engine_finder()
    if isinstance(engine, PostgresEngine):
        await engine.run_ddl("DROP INDEX canvas_search")
    else:
        for statement in SQLITE_DROP:
            await engine.run_ddl(statement)
    await engine.run_ddl("ALTER TABLE canvas DROP COLUMN search_text")
    await engine.run_ddl("ALTER TABLE canvas DROP COLUMN version")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="canvas", description=DESCRIPTION)
    manager.add_raw(forwards_raw)
    manager.add_raw_backwards(backwards_raw)
    return manager
