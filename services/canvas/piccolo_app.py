"""Piccolo app registration for the canvas service's tables and migrations."""

from __future__ import annotations

import os

from piccolo.conf.apps import AppConfig

from services.canvas.tables import Canvas, CanvasTag, DeletedUser, ProcessedEvent, ViewBatch

APP_CONFIG = AppConfig(
    app_name="canvas",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=[Canvas, CanvasTag, ViewBatch, ProcessedEvent, DeletedUser],
    migration_dependencies=[],
    commands=[],
)
