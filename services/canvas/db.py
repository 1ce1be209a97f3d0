"""Where the canvas tables run: `engine()`, `transaction()` and `bound(engine)` (shared.db.TableSet).

The app's lifespan binds them to its own engine; the Piccolo CLI finds `piccolo_conf`'s instead.
"""

from __future__ import annotations

from services.canvas.tables import TABLES
from shared.db import TableSet

_tables = TableSet(TABLES)
engine, transaction, bound = _tables.engine, _tables.transaction, _tables.bound
