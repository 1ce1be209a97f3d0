"""PostgreSQL: the search words as a stored tsvector column with its GIN index (SQLite: nothing to do).

The index of the previous migration was on an expression; a query whose plan filters rows by it
(walking the listing's order for a common word) or rechecks them (after a bitmap scan for a rare one)
recomputed the tsvector for every row, which cost more than the rest of the query. A stored generated
column is computed once per write, by the same UPDATE that writes `search_text`.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.postgres import PostgresEngine

ID = "2026-12-04T17:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "canvas search vector column"

VECTOR = "array_to_tsvector(string_to_array(search_text, ' '))"


async def forwards_raw() -> None:
    engine = engine_finder()
    if isinstance(engine, PostgresEngine):
        await engine.run_ddl(f"ALTER TABLE canvas ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({VECTOR}) STORED")
        await engine.run_ddl("CREATE INDEX canvas_search_vector ON canvas USING gin (search_vector)")
        await engine.run_ddl("DROP INDEX canvas_search")


async def backwards_raw() -> None:
    engine = engine_finder()
    if isinstance(engine, PostgresEngine):
        await engine.run_ddl(f"CREATE INDEX canvas_search ON canvas USING gin ({VECTOR})")
        await engine.run_ddl("ALTER TABLE canvas DROP COLUMN search_vector")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="canvas", description=DESCRIPTION)
    manager.add_raw(forwards_raw)
    manager.add_raw_backwards(backwards_raw)
    return manager
