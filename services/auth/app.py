"""The auth service's ASGI app (`services.auth.app:app`): users and sessions, port 8001."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import structlog
from litestar import Litestar
from piccolo.engine.base import Engine

from services.auth import db, mail_tokens
from services.auth.container import Container
from services.auth.controllers import DEPENDENCIES, AuthController, InternalController, UsersController
from services.auth.piccolo_app import APP_CONFIG
from services.auth.sessions import SessionService
from services.auth.settings import AuthSettings, from_environment
from shared.app import create_service_app, entry_point, redis_answers
from shared.db import engine_lifespan, make_engine
from shared.loops import every
from shared.redis import REQUEST_PATH, redis_client
from shared.timeutil import utcnow

log = structlog.get_logger()


async def _purge_expired_sessions(sessions: SessionService) -> None:
    """Sessions nobody presents again are never validated, so a sweep deletes them once expired
    (and the expired tokens of mail links with them)."""
    purged = await sessions.purge_expired()
    tokens = await mail_tokens.purge_expired(utcnow())
    if purged or tokens:
        log.info("expired_sessions_purged", count=purged, mail_tokens=tokens)


@asynccontextmanager
async def lifespan(config: AuthSettings, engine: Engine[Any], app: Litestar) -> AsyncIterator[None]:
    """Database, Redis, the warmed-up hasher and the session sweep; on the way out the sweep stops."""
    with db.bound(engine):
        async with engine_lifespan(engine, config.db_pool_size):
            redis = redis_client(config.redis_url, REQUEST_PATH)
            container = Container.build(config, redis)
            await container.passwords.warm_up()
            app.state.container = container
            interval = config.session_purge_interval.total_seconds()
            purge = partial(_purge_expired_sessions, container.sessions)
            sweeper = asyncio.create_task(every(interval, purge, name="session-purge"))
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                await redis.aclose()


def create_app(config: AuthSettings) -> Litestar:
    """The app for these settings: its own database engine, Redis client, hasher and services."""
    engine = make_engine(config.database_url)
    return create_service_app(
        name="auth",
        settings=config,
        route_handlers=[AuthController, UsersController, InternalController],
        lifespan=[partial(lifespan, config, engine)],
        database=(engine, APP_CONFIG),
        container_checks={"redis": redis_answers},
        dependencies=DEPENDENCIES,
    )


# `module:app` for uvicorn: built from the environment on first access, not at import.
__getattr__ = entry_point(lambda: create_app(from_environment()))
