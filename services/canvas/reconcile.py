"""The reconciliation sweep: delete the canvases of owners the auth service no longer knows.

Events can be lost (Redis may lose a stream), so every canvas process also sweeps periodically
(CANVAS_RECONCILE_INTERVAL) and `python -m services.canvas.reconcile` runs one sweep on demand.
Owners are walked in id order, CANVAS_RECONCILE_BATCH at a time; an owner is removed only when the
auth service answered and did not list them. If the auth service cannot answer, the sweep stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import uuid
from dataclasses import dataclass

import aiohttp
import structlog
from redis.asyncio import Redis

from services.canvas.auth_client import AuthClient
from services.canvas.cascade import delete_user
from services.canvas.db import DB
from services.canvas.read_cache import ReadCache
from services.canvas.settings import CanvasSettings, settings
from services.canvas.tables import Canvas
from services.canvas.views import ViewCounter
from shared.db import engine_lifespan
from shared.logging import configure_logging

log = structlog.get_logger()


@dataclass
class Sweep:
    owners_checked: int = 0
    owners_removed: int = 0
    canvases_deleted: int = 0


async def _owners_after(after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
    query = Canvas.select(Canvas.user_id).distinct().order_by(Canvas.user_id).limit(limit)
    if after is not None:
        query = query.where(Canvas.user_id > after)
    return [uuid.UUID(str(row["user_id"])) for row in await query.run()]


async def sweep(auth: AuthClient, cache: ReadCache, *, batch: int, delete_batch: int) -> Sweep:
    """One full pass over every canvas owner. Raises AuthUnavailable if the auth service fails."""
    result = Sweep()
    after: uuid.UUID | None = None
    while owners := await _owners_after(after, batch):
        existing = await auth.existing_users(owners)
        for owner in owners:
            if owner not in existing:
                deleted = await delete_user(owner, cache=cache, batch_size=delete_batch)
                result.owners_removed += 1
                result.canvases_deleted += deleted.canvases
        result.owners_checked += len(owners)
        after = owners[-1]
    log.info("reconcile_sweep_done", **dataclasses.asdict(result))
    return result


async def run_once(config: CanvasSettings = settings) -> Sweep:
    async with (
        engine_lifespan(DB, pool_size=2),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.auth_timeout)) as http,
    ):
        auth = AuthClient(http, config.auth_url, config.secret)
        redis = Redis.from_url(config.redis_url)
        try:
            cache = ReadCache.configured(ViewCounter(redis), config)
            return await sweep(auth, cache, batch=config.reconcile_batch, delete_batch=config.delete_batch)
        finally:
            await redis.aclose()


def main() -> None:
    configure_logging("canvas-reconcile", json=settings.json_logs, level=settings.log_level)
    result = asyncio.run(run_once())
    sys.stdout.write(json.dumps(dataclasses.asdict(result)) + "\n")


if __name__ == "__main__":
    main()
