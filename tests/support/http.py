"""HTTP helpers shared by the gateway, end-to-end and resilience tests: a bare client and its fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest

ALLOWED_ORIGIN = "http://app.example"


class Reply(msgspec.Struct):
    status: int
    headers: Any  # CIMultiDictProxy: repeated headers (Set-Cookie) kept
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


class Client:
    """A bare HTTP client: no cookie jar, so every cookie and header a test sends is explicit."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def __call__(self, method: str, url: str, **kwargs: Any) -> Reply:
        async with self.session.request(method, url, allow_redirects=False, **kwargs) as resp:
            return Reply(resp.status, resp.headers, await resp.read())


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[Client]:
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them under a request.
    connector = aiohttp.TCPConnector(keepalive_timeout=3)
    session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
    yield Client(session)
    await session.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"session={token}"}
