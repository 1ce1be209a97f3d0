"""The auth service's one database engine; its Piccolo tables are bound to it."""

from __future__ import annotations

from services.auth.settings import settings
from shared.db import make_engine

DB = make_engine(settings.database_url)
