"""Piccolo configuration for the auth service (`PICCOLO_CONF=services.auth.piccolo_conf`)."""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry

from services.auth.settings import from_environment
from shared.db import make_engine

# The CLI is an entry point: it reads the environment (unbound tables find this engine).
DB = make_engine(from_environment().database_url)
APP_REGISTRY = AppRegistry(apps=["services.auth.piccolo_app"])

__all__ = ["APP_REGISTRY", "DB"]
