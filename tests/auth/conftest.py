"""Auth service fixtures: the app in-process (real Redis, real database) and gateway-like callers.

Service modules are imported inside the fixtures: this file may be loaded before tests/conftest.py
has set up the environment the service's settings are read from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from httpx import AsyncClient
    from litestar import Litestar

    from tests.auth.support import Account, Api, Clock


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    """Override in a test module (or parametrize) to run the app with other settings."""
    return {}


@pytest.fixture
def app(settings_changes: dict[str, Any]) -> Litestar:
    from services.auth.app import create_app
    from tests.auth.support import auth_settings

    return create_app(auth_settings(**settings_changes))


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncClient]:
    from tests.auth.support import running

    async with running(app) as test_client:
        yield test_client


@pytest.fixture
def api(client: AsyncClient) -> Api:
    from tests.auth.support import Api

    return Api(client)


@pytest.fixture
async def account(api: Api, unique_email: str) -> Account:
    return await api.signup(unique_email)


@pytest.fixture
def clock(app: Litestar, client: AsyncClient) -> Clock:
    """Injected into the running app's session service."""
    from tests.auth.support import Clock

    fake = Clock()
    app.state.sessions.clock = fake
    return fake
