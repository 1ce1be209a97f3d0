"""The canvas service's one database engine (SQLite file or PostgreSQL pool, from CANVAS_DATABASE_URL)."""

from __future__ import annotations

from services.canvas.settings import settings
from shared.db import make_engine

DB = make_engine(settings.database_url)
