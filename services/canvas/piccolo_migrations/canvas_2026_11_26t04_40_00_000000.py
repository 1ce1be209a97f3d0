"""Composite indexes for keyset pagination and tag lookups (plain SQL that both engines accept)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-26T04:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "canvas listing and tag indexes"

INDEXES = {
    # Listing order is (created_at DESC, id DESC); each filter gets the order as its index suffix.
    "canvas_order": "canvas (created_at, id)",
    "canvas_public_order": "canvas (is_public, created_at, id)",
    "canvas_user_order": "canvas (user_id, created_at, id)",
    "canvas_type_order": "canvas (type, created_at, id)",
    "canvas_tag_tag": "canvas_tag (tag, canvas)",
}
UNIQUE_INDEXES = {"canvas_tag_canvas_tag": "canvas_tag (canvas, tag)"}


async def create_indexes():
    engine = engine_finder()
    for name, target in INDEXES.items():
        await engine.run_ddl(f"CREATE INDEX {name} ON {target}")
    for name, target in UNIQUE_INDEXES.items():
        await engine.run_ddl(f"CREATE UNIQUE INDEX {name} ON {target}")


async def drop_indexes():
    engine = engine_finder()
    for name in [*INDEXES, *UNIQUE_INDEXES]:
        await engine.run_ddl(f"DROP INDEX {name}")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="canvas", description=DESCRIPTION)
    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)
    return manager
