"""Piccolo app registration: where the auth service's migrations live and which tables they cover."""

from __future__ import annotations

from pathlib import Path

from piccolo.conf.apps import AppConfig

from services.auth.tables import MailOutbox, MailToken, Outbox, Session, User

APP_CONFIG = AppConfig(
    app_name="auth",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[User, Session, Outbox, MailToken, MailOutbox],
    migration_dependencies=[],
    commands=[],
)
