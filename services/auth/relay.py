"""The outbox relay (`python -m services.auth.relay`): publishes unsent outbox rows to the Redis
Stream and marks them sent; beside that loop it sends the mail outbox over SMTP (services.auth.mailer).

Delivery is at least once: a row is marked sent in the transaction that claimed it, after XADD
succeeded, so a crash between the two sends it again (consumers are idempotent). While Redis is
down rows simply wait; the loop backs off and retries. SIGTERM/SIGINT finish the current batch and
exit. Several relays may run at once (see outbox.claim_unsent for how they avoid double sends).

Sent rows are kept for AUTH_OUTBOX_RETENTION, then deleted: the relay prunes when it starts and
hourly after that, PRUNE_BATCH rows per statement so a backlog never holds a long write transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis

from services.auth import db, mailer, outbox
from services.auth.settings import AuthSettings, from_environment
from shared.db import engine_lifespan, make_engine
from shared.events import publish
from shared.logging import configure_logging
from shared.loops import isolated
from shared.redis import BACKGROUND, REDIS_UNAVAILABLE, redis_client
from shared.settings import log_startup_warnings
from shared.timeutil import utcnow

log = structlog.get_logger()

MAX_BACKOFF = 30.0
PRUNE_EVERY = 3600.0  # seconds between prunes of sent rows
PRUNE_BATCH = 1000


async def relay_once(redis: Redis, batch_size: int) -> int:
    """Publish up to `batch_size` unsent events; returns how many were sent.

    Raises one of REDIS_UNAVAILABLE when Redis refuses, after marking the events it did send.
    """
    if not await outbox.has_unsent():  # a cheap read first: no write transaction while idle
        return 0
    sent: list[int] = []
    error: Exception | None = None
    async with db.transaction():
        for row_id, event in await outbox.claim_unsent(batch_size):
            try:
                await publish(redis, event)
            except REDIS_UNAVAILABLE as exc:
                error = exc
                break
            sent.append(row_id)
        if sent:
            await outbox.mark_sent(sent, utcnow())
    if error is not None:
        raise error
    return len(sent)


async def prune(now: datetime, *, retention: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Delete the rows sent more than `retention` before `now`, `batch` per statement; returns how many."""
    pruned = 0
    while (deleted := await outbox.delete_sent_before(now - retention, batch)) == batch:
        pruned += deleted
    pruned += deleted
    while (deleted := await mailer.prune(now - retention, batch)) == batch:
        pruned += deleted
    return pruned + deleted


async def _prune_logged(retention: timedelta) -> None:
    try:
        pruned = await prune(utcnow(), retention=retention)
    except Exception as exc:  # the database is down: the next prune catches up
        log.warning("outbox_prune_failed", error=f"{type(exc).__name__}: {exc}")
    else:
        if pruned:
            log.info("outbox_pruned", count=pruned)


async def run(stop: asyncio.Event, settings: AuthSettings) -> None:
    """Relay events and send mail (services.auth.mailer, beside the event loop) until `stop` is set."""
    engine = make_engine(settings.database_url)
    with db.bound(engine):
        async with engine_lifespan(engine, pool_size=3):
            redis = redis_client(settings.redis_url, BACKGROUND)
            sender = asyncio.create_task(mailer.Mailer(settings, redis).run(stop))
            try:
                await _relay_events(stop, redis, settings)
            finally:
                stop.set()
                await sender
                await redis.aclose()


async def _relay_events(stop: asyncio.Event, redis: Redis, settings: AuthSettings) -> None:
    backoff = settings.relay_interval
    next_prune = time.monotonic()
    while not stop.is_set():
        if time.monotonic() >= next_prune:
            await isolated(_prune_logged(settings.outbox_retention))
            next_prune = time.monotonic() + PRUNE_EVERY
        try:
            # A clean context per iteration: nothing a failed one left behind reaches the next.
            sent = await isolated(relay_once(redis, settings.relay_batch_size))
        except Exception as exc:  # Redis or the database is down: wait, then retry
            log.warning("relay_failed", error=f"{type(exc).__name__}: {exc}", retry_in=backoff)
            delay, backoff = backoff, min(backoff * 2, MAX_BACKOFF)
        else:
            if sent:
                log.info("outbox_relayed", count=sent)
            backoff = settings.relay_interval
            delay = 0 if sent == settings.relay_batch_size else settings.relay_interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


async def main(settings: AuthSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("relay_started")
    await run(stop, settings)
    log.info("relay_stopped")


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.auth.relay",
        description="Publish the auth service's unsent outbox rows to the Redis stream until SIGTERM/SIGINT.",
    )
    parser.parse_args(argv)
    config = from_environment()
    configure_logging("auth-relay", json=config.json_logs, level=config.log_level)
    log_startup_warnings(config)
    asyncio.run(main(config))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
