"""Canvas service fixtures: the app in-process (real Redis, real database) and signed callers.

Service modules are imported inside the fixtures: this file may be loaded before tests/conftest.py
has set up the environment the service's settings are read from.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from httpx import AsyncClient
    from litestar import Litestar
    from redis.asyncio import Redis

    from services.canvas.read_cache import ReadCache
    from services.canvas.view_counter import ViewCounter
    from tests.canvas.support import Caller


@pytest.fixture
def app() -> Litestar:
    from services.canvas.app import create_app
    from tests.canvas.support import canvas_settings

    return create_app(canvas_settings())


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncClient]:
    from tests.canvas.support import running

    async with running(app) as test_client:
        yield test_client


@pytest.fixture
def views(app: Litestar, client: AsyncClient) -> ViewCounter:
    """The running app's view counter."""
    return app.state.container.views  # type: ignore[no-any-return]


@pytest.fixture
async def cache(redis: Redis) -> AsyncIterator[ReadCache]:
    """A read cache on the test Redis, configured as the service's."""
    from services.canvas.read_cache import ReadCache
    from services.canvas.view_counter import ViewCounter
    from tests.canvas.support import canvas_settings

    cache = ReadCache.configured(ViewCounter(redis), canvas_settings())
    yield cache
    await cache.aclose()


@pytest.fixture
def alice(client: AsyncClient) -> Caller:
    from tests.canvas.support import Caller

    return Caller(client, str(uuid.uuid4()))


@pytest.fixture
def bob(client: AsyncClient) -> Caller:
    from tests.canvas.support import Caller

    return Caller(client, str(uuid.uuid4()))


@pytest.fixture
def anon(client: AsyncClient) -> Caller:
    from tests.canvas.support import Caller

    return Caller(client, None)
