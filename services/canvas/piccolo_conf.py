"""Piccolo configuration (PICCOLO_CONF=services.canvas.piccolo_conf) for migrations."""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry

from services.canvas.settings import from_environment
from shared.db import make_engine

# The CLI is an entry point: it reads the environment (unbound tables find this engine).
DB = make_engine(from_environment().database_url)
APP_REGISTRY = AppRegistry(apps=["services.canvas.piccolo_app"])

__all__ = ["APP_REGISTRY", "DB"]
