"""Auth service fixtures: the app in-process (real Redis, real database) and gateway-like callers.

One app serves every test (building an app costs more than most tests); a test that sets
`settings_changes` gets session and throttle services built from those settings for its duration.

Service modules are imported inside the fixtures: this file may be loaded before tests/conftest.py
has set up the environment the service's settings are read from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from httpx import AsyncClient
    from litestar import Litestar

    from tests.auth.support import Account, Api, Clock

Served = tuple["Litestar", "AsyncClient"]


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    """Override (e.g. with parametrize) to run a test with other session or throttle settings."""
    return {}


@pytest.fixture(scope="session")
async def default_app() -> AsyncIterator[Served]:
    from services.auth.app import create_app
    from tests.auth.support import auth_settings, running

    app = create_app(auth_settings())
    async with running(app) as client:
        yield app, client


@pytest.fixture
def app(default_app: Served, settings_changes: dict[str, Any]) -> Iterator[Litestar]:
    """The running app; with `settings_changes`, its session and throttle services use them."""
    from services.auth.sessions import SessionService
    from services.auth.throttle import LoginThrottle
    from tests.auth.support import auth_settings

    app, state = default_app[0], default_app[0].state
    if not settings_changes:
        yield app
        return
    config, saved = auth_settings(**settings_changes), state.container
    redis = saved.redis
    state.container = dataclasses.replace(
        saved, sessions=SessionService(redis, config), throttle=LoginThrottle(redis, config)
    )
    yield app
    state.container = saved


@pytest.fixture
def client(default_app: Served, app: Litestar) -> AsyncClient:
    return default_app[1]


@pytest.fixture
def api(client: AsyncClient) -> Api:
    from tests.auth.support import Api

    return Api(client)


@pytest.fixture
async def account(api: Api, unique_email: str) -> Account:
    return await api.signup(unique_email)


@pytest.fixture
def clock(app: Litestar) -> Iterator[Clock]:
    """A controllable clock injected into the app's session service for the test."""
    from tests.auth.support import Clock

    sessions, fake = app.state.container.sessions, Clock()
    original, sessions.clock = sessions.clock, fake
    yield fake
    sessions.clock = original
