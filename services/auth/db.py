"""The auth service's database: its tables, bound to the engine `create_app` builds from its settings.

The tables are declared without an engine; the app's lifespan binds them (`bound`) for as long as it
runs (see `shared.db.bind_tables`). The Piccolo CLI, which never runs the app, finds the engine of
`piccolo_conf` instead.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from piccolo.engine.base import Engine

from services.auth.tables import TABLES, User
from shared.db import bind_tables


def engine() -> Engine[Any]:
    """The engine the tables are bound to now."""
    return User._meta.db


def transaction() -> Any:
    """A transaction on the bound engine (`async with db.transaction(): ...`)."""
    return engine().transaction()


def bound(to: Engine[Any]) -> AbstractContextManager[None]:
    return bind_tables(TABLES, to)
