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

    from tests.canvas.support import Caller


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    from services.canvas.app import create_app
    from tests.canvas.support import canvas_settings, running

    async with running(create_app(canvas_settings())) as test_client:
        yield test_client


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
