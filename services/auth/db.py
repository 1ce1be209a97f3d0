"""The auth tables' engine: the one its app's lifespan bound them to (`shared.db.TableSet`)."""

from __future__ import annotations

from services.auth.tables import TABLES
from shared.db import TableSet

_tables = TableSet(TABLES)
engine, transaction, bound = _tables.engine, _tables.transaction, _tables.bound
