"""The canvas service's settings: CANVAS_* variables plus the shared unprefixed ones."""

from __future__ import annotations

import os
import socket

import msgspec

from shared.settings import CommonSettings, SettingsError, load_settings


def _default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class CanvasSettings(CommonSettings, kw_only=True):
    database_url: str = "sqlite:///data/canvas.db"
    db_pool_size: int = 10
    redis_pool_size: int = 50
    auth_url: str = "http://127.0.0.1:8001"
    auth_timeout: float = 10.0

    # The largest request body (bytes); the field limits are the contract's (schemas.py).
    body_max_bytes: int = 2 * 1024 * 1024

    # Background work inside each web process (off for tools and some tests).
    run_background: bool = True
    flush_interval: float = 1.0  # seconds between view-buffer flushes
    view_batch_retention: float = 86_400.0  # seconds an applied batch id is remembered

    # The read cache (read_cache.py): canvases served from Redis; 0 seconds turns it off.
    read_cache_ttl: int = 60  # seconds a cached canvas lives (bounds a missed invalidation)
    read_cache_max_bytes: int = 65_536  # larger canvases (as JSON) are always read from the database
    reconcile_interval: float = 3_600.0  # seconds between reconciliation sweeps
    reconcile_batch: int = 1000  # owner ids per call to the auth service (its limit: 1000)
    # A sweep that finds more than this share of owners unknown to auth deletes nothing (reconcile.py).
    reconcile_max_unknown_fraction: float = 0.5
    delete_batch: int = 1000  # canvases deleted per transaction in the cascade

    # The user-events consumer.
    consumer_name: str = msgspec.field(default_factory=_default_consumer_name)
    consumer_block_ms: int = 1_000
    claim_idle_ms: int = 30_000  # a pending entry idle this long is reclaimed (and retried)
    max_deliveries: int = 5  # deliveries before an entry goes to the dead-letter stream

    def check(self) -> None:
        super().check()
        if not 1 <= self.reconcile_batch <= 1000:
            raise SettingsError("CANVAS_RECONCILE_BATCH must be 1..1000 (the auth service's limit)")
        if not 0 <= self.reconcile_max_unknown_fraction <= 1:
            raise SettingsError("CANVAS_RECONCILE_MAX_UNKNOWN_FRACTION must be 0..1 (1 turns the guard off)")
        if self.read_cache_ttl < 0 or self.read_cache_max_bytes < 0:
            raise SettingsError("CANVAS_READ_CACHE_TTL and CANVAS_READ_CACHE_MAX_BYTES must be >= 0")
        if self.max_deliveries < 1 or self.delete_batch < 1 or self.flush_interval <= 0:
            raise SettingsError(
                "CANVAS_MAX_DELIVERIES, CANVAS_DELETE_BATCH and CANVAS_FLUSH_INTERVAL must be > 0"
            )


def from_environment() -> CanvasSettings:
    """The settings from the environment (exit 2 when invalid): entry points call this once."""
    return load_settings(CanvasSettings, prefix="CANVAS_")
