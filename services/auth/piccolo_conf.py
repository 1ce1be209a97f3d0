"""Piccolo configuration for the auth service (`PICCOLO_CONF=services.auth.piccolo_conf`)."""

from __future__ import annotations

from piccolo.conf.apps import AppRegistry

from services.auth.db import DB

APP_REGISTRY = AppRegistry(apps=["services.auth.piccolo_app"])

__all__ = ["APP_REGISTRY", "DB"]
