"""The reconciliation sweep: delete the canvases of owners the auth service no longer knows.

Events can be lost (Redis may lose a stream), so every canvas process also sweeps periodically
(CANVAS_RECONCILE_INTERVAL) and `python -m services.canvas.reconcile` runs one sweep on demand
(`--dry-run`: report what it would delete, delete nothing).
Owners are walked in id order, CANVAS_RECONCILE_BATCH at a time; an owner is removed only when the
auth service answered and did not list them. If the auth service cannot answer, the sweep stops.

A pass asks about every owner before it deletes anything. When more than
CANVAS_RECONCILE_MAX_UNKNOWN_FRACTION of the owners it checked (default half) are unknown, and at
least GUARD_MIN_OWNERS were checked, it deletes nothing and logs `reconcile_sweep_refused`: an auth
service pointed at an empty or wrong database would otherwise have every canvas deleted. Lost events
orphan a few owners, never most of them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from piccolo.engine.base import Engine

from services.canvas import db
from services.canvas.auth_client import AuthClient, AuthUnavailable
from services.canvas.cascade import delete_user
from services.canvas.read_cache import ReadCache
from services.canvas.settings import CanvasSettings, from_environment
from services.canvas.tables import Canvas
from services.canvas.view_counter import ViewCounter
from shared.db import engine_lifespan, make_engine
from shared.logging import configure_logging
from shared.redis import BACKGROUND, REDIS_UNAVAILABLE, redis_client
from shared.settings import log_startup_warnings

log = structlog.get_logger()


# Below this many owners a share is too coarse to tell a broken auth service from a few deletions
# (one orphan of two owners is half), and what a wrong verdict can delete is small.
GUARD_MIN_OWNERS = 20


@dataclass
class Sweep:
    owners_checked: int = 0
    owners_unknown: int = 0
    owners_removed: int = 0
    canvases_deleted: int = 0
    refused: bool = False  # too many unknown owners: nothing was deleted
    dry_run: bool = False  # asked only: nothing was deleted


async def _owners_after(after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
    query = Canvas.select(Canvas.user_id).distinct().order_by(Canvas.user_id).limit(limit)
    if after is not None:
        query = query.where(Canvas.user_id > after)
    return [uuid.UUID(str(row["user_id"])) for row in await query.run()]


async def _unknown_owners(auth: AuthClient, batch: int, result: Sweep) -> list[uuid.UUID]:
    unknown: list[uuid.UUID] = []
    after: uuid.UUID | None = None
    while owners := await _owners_after(after, batch):
        existing = await auth.existing_users(owners)
        unknown += [owner for owner in owners if owner not in existing]
        result.owners_checked += len(owners)
        after = owners[-1]
    result.owners_unknown = len(unknown)
    return unknown


async def sweep(
    auth: AuthClient,
    cache: ReadCache,
    *,
    batch: int,
    delete_batch: int,
    max_unknown_fraction: float,
    dry_run: bool = False,
) -> Sweep:
    """One full pass over every canvas owner. Raises AuthUnavailable if the auth service fails."""
    result = Sweep(dry_run=dry_run)
    unknown = await _unknown_owners(auth, batch, result)
    checked = result.owners_checked
    if checked >= GUARD_MIN_OWNERS and len(unknown) > max_unknown_fraction * checked:
        result.refused = True
        log.error(
            "reconcile_sweep_refused",
            owners_checked=checked,
            owners_unknown=len(unknown),
            max_unknown_fraction=max_unknown_fraction,
        )
        return result
    if dry_run:
        log.info("reconcile_dry_run", owners_unknown=[str(owner) for owner in unknown])
        return result
    for owner in unknown:
        deleted = await delete_user(owner, cache=cache, batch_size=delete_batch)
        result.owners_removed += 1
        result.canvases_deleted += deleted.canvases
    log.info("reconcile_sweep_done", **dataclasses.asdict(result))
    return result


async def run_once(config: CanvasSettings, *, dry_run: bool = False) -> Sweep:
    engine = make_engine(config.database_url)
    with db.bound(engine):
        return await _run_once(config, engine, dry_run=dry_run)


async def _run_once(config: CanvasSettings, engine: Engine[Any], *, dry_run: bool) -> Sweep:
    async with (
        engine_lifespan(engine, pool_size=2),
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.auth_timeout)) as http,
        redis_client(config.redis_url, BACKGROUND) as redis,
    ):
        return await sweep(
            AuthClient(http, config.auth_url, config.secret),
            ReadCache.configured(ViewCounter(redis), config),
            batch=config.reconcile_batch,
            delete_batch=config.delete_batch,
            max_unknown_fraction=config.reconcile_max_unknown_fraction,
            dry_run=dry_run,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.canvas.reconcile",
        description="One reconciliation sweep now: delete the canvases of owners the auth service "
        "(CANVAS_AUTH_URL) no longer knows. Prints the result as one JSON line; exits 1 when the "
        "sweep guard refused to delete.",
    )
    parser.add_argument("--dry-run", action="store_true", help="report the unknown owners, delete nothing")
    args = parser.parse_args(argv)
    config = from_environment()
    configure_logging("canvas-reconcile", json=config.json_logs, level=config.log_level)
    log_startup_warnings(config)
    try:
        result = asyncio.run(run_once(config, dry_run=args.dry_run))
    except AuthUnavailable as exc:
        sys.stderr.write(f"the auth service at {config.auth_url} did not answer: {exc}\n")
        return 1
    except REDIS_UNAVAILABLE as exc:
        sys.stderr.write(f"Redis at {config.redis_url} did not answer ({exc}); is the system running?\n")
        return 1
    sys.stdout.write(json.dumps(dataclasses.asdict(result)) + "\n")
    return 1 if result.refused else 0


if __name__ == "__main__":
    sys.exit(main())
