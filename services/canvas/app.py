"""The canvas service (port 8002): `services.canvas.app:app`, or `create_app()` for tests and tools."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import aiohttp
from litestar import Litestar

from services.canvas.auth_client import AuthClient
from services.canvas.background import Background
from services.canvas.controllers import CanvasController, MyCanvasController
from services.canvas.db import DB
from services.canvas.piccolo_app import APP_CONFIG
from services.canvas.read_cache import ReadCache
from services.canvas.settings import CanvasSettings, settings
from services.canvas.view_counter import ViewCounter
from shared.app import create_service_app
from shared.db import engine_lifespan, migrations_check, ping
from shared.redis import REQUEST_PATH, RedisPolicy, redis_client


def redis_policy(config: CanvasSettings) -> RedisPolicy:
    """A bounded pool: under a burst, requests wait up to 5 s for a connection instead of failing."""
    return dataclasses.replace(
        REQUEST_PATH, connect_timeout=2.0, max_connections=config.redis_pool_size, pool_timeout=5.0
    )


@asynccontextmanager
async def lifespan(config: CanvasSettings, app: Litestar) -> AsyncIterator[None]:
    """Database, Redis, the auth client and the background loops; on the way out a final view flush."""
    async with engine_lifespan(DB, config.db_pool_size):
        redis = redis_client(config.redis_url, redis_policy(config))
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.auth_timeout))
        app.state.redis = redis
        app.state.views = ViewCounter(redis, batch_retention=config.view_batch_retention)
        app.state.cache = ReadCache.configured(app.state.views, config)
        app.state.auth = AuthClient(http, config.auth_url, config.secret)
        background = Background(config, redis, app.state.views, app.state.cache, app.state.auth)
        app.state.background = background
        if config.run_background:
            background.start()
        try:
            yield
        finally:
            await background.stop()
            await http.close()
            await redis.aclose()


def create_app(config: CanvasSettings = settings) -> Litestar:
    async def redis_answers() -> None:
        # app.state, not a State passed in: Litestar copies the State it is given.
        await app.state.redis.ping()

    async def loops_healthy() -> None:
        await app.state.background.health.check()

    app = create_service_app(
        name="canvas",
        settings=config,
        route_handlers=[CanvasController, MyCanvasController],
        lifespan=[partial(lifespan, config)],
        ready_checks={
            "database": partial(ping, DB),
            "migrations": migrations_check(DB, APP_CONFIG.app_name, APP_CONFIG.migrations_folder_path),
            "redis": redis_answers,
            "background": loops_healthy,
        },
        request_max_body_size=config.body_max_bytes,
    )
    return app


app = create_app()
