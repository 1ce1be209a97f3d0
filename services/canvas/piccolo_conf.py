"""Piccolo configuration (PICCOLO_CONF=services.canvas.piccolo_conf) for migrations."""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry

from services.canvas.db import DB

APP_REGISTRY = AppRegistry(apps=["services.canvas.piccolo_app"])

__all__ = ["APP_REGISTRY", "DB"]
