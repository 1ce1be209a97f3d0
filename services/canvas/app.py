"""The canvas service (port 8002): `services.canvas.app:app`, or `create_app(settings)` for tests."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import aiohttp
from litestar import Litestar
from piccolo.engine.base import Engine

from services.canvas import db
from services.canvas.container import Container
from services.canvas.controllers import DEPENDENCIES, CanvasController, MyCanvasController
from services.canvas.piccolo_app import APP_CONFIG
from services.canvas.settings import CanvasSettings, from_environment
from shared.app import create_service_app, entry_point, redis_answers
from shared.db import engine_lifespan, make_engine
from shared.redis import REQUEST_PATH, RedisPolicy, redis_client


def redis_policy(config: CanvasSettings) -> RedisPolicy:
    """A bounded pool: under a burst, requests wait up to 5 s for a connection instead of failing."""
    return dataclasses.replace(
        REQUEST_PATH, connect_timeout=2.0, max_connections=config.redis_pool_size, pool_timeout=5.0
    )


@asynccontextmanager
async def lifespan(config: CanvasSettings, engine: Engine[Any], app: Litestar) -> AsyncIterator[None]:
    """Database, Redis, the auth client and the background loops; on the way out a final view flush."""
    with db.bound(engine):
        async with engine_lifespan(engine, config.db_pool_size):
            redis = redis_client(config.redis_url, redis_policy(config))
            http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.auth_timeout))
            container = Container.build(config, redis, http)
            app.state.container = container
            if config.run_background:
                container.background.start()
            try:
                yield
            finally:
                await container.background.stop()
                await container.cache.aclose()
                await http.close()
                await redis.aclose()


async def loops_healthy(container: Container) -> None:
    """A container check: no background loop is unhealthy (stopped, or failing too long: LoopHealth)."""
    await container.background.health.check()


def create_app(config: CanvasSettings) -> Litestar:
    """The app for these settings: its own database engine, Redis client, codecs and loops."""
    engine = make_engine(config.database_url)
    return create_service_app(
        name="canvas",
        settings=config,
        route_handlers=[CanvasController, MyCanvasController],
        lifespan=[partial(lifespan, config, engine)],
        database=(engine, APP_CONFIG),
        container_checks={"redis": redis_answers, "background": loops_healthy},
        request_max_body_size=config.body_max_bytes,
        dependencies=DEPENDENCIES,
    )


# `module:app` for uvicorn: built from the environment on first access, not at import.
__getattr__ = entry_point(lambda: create_app(from_environment()))
