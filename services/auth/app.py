"""The auth service's ASGI app (`services.auth.app:app`): users and sessions, port 8001."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import structlog
from litestar import Litestar
from litestar.datastructures import State

from services.auth import mail_tokens, passwords
from services.auth.controllers import DEPENDENCIES, AuthController, InternalController, UsersController
from services.auth.db import DB
from services.auth.piccolo_app import APP_CONFIG
from services.auth.recovery import MailRequestLimit
from services.auth.sessions import SessionService
from services.auth.settings import AuthSettings, settings
from services.auth.throttle import LoginThrottle
from shared.app import create_service_app
from shared.db import engine_lifespan, migrations_check, ping
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


def _lifespan(config: AuthSettings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with engine_lifespan(DB, config.db_pool_size):
            await passwords.warm_up()
            redis = redis_client(config.redis_url, REQUEST_PATH)
            app.state.redis = redis
            app.state.sessions = SessionService(redis, config)
            app.state.throttle = LoginThrottle(redis, config)
            app.state.mail_limit = MailRequestLimit(redis, config)
            interval = config.session_purge_interval.total_seconds()
            purge = partial(_purge_expired_sessions, app.state.sessions)
            sweeper = asyncio.create_task(every(interval, purge, name="session-purge"))
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                await redis.aclose()

    return lifespan


def create_app(config: AuthSettings = settings) -> Litestar:
    """The app; `config` defaults to the environment's (its database URL is always the engine's)."""

    async def redis_answers() -> None:
        await app.state.redis.ping()

    app = create_service_app(
        name="auth",
        settings=config,
        route_handlers=[AuthController, UsersController, InternalController],
        state=State({"settings": config}),
        lifespan=[_lifespan(config)],
        ready_checks={
            "database": partial(ping, DB),
            "migrations": migrations_check(DB, APP_CONFIG.app_name, APP_CONFIG.migrations_folder_path),
            "redis": redis_answers,
        },
        dependencies=DEPENDENCIES,
    )
    return app


app = create_app()
