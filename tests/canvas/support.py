"""Helpers for the canvas tests: test settings, signed credentials, a caller that talks like the gateway.

Imported by test modules only (collected after tests/conftest.py configured the environment).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from httpx import Response
from litestar.testing import AsyncTestClient

from services.canvas.settings import CanvasSettings, settings
from shared import internal_auth


def canvas_settings(**changes: Any) -> CanvasSettings:
    """The test settings, by default without the background loops (tests drive flushes themselves)."""
    return msgspec.structs.replace(settings, **{"run_background": False, **changes})


def signed(uid: str | None) -> dict[str, str]:
    return {internal_auth.HEADER: internal_auth.sign(settings.secret, user_id=uid)}


def canvas_body(**fields: Any) -> dict[str, Any]:
    return {"title": "A canvas", "type": "python", "code": "print(42)", **fields}


class Caller:
    """Someone calling the canvas service through the gateway (uid None = anonymous)."""

    def __init__(self, client: AsyncTestClient, uid: str | None) -> None:
        self.client = client
        self.uid = uid

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        headers = {**signed(self.uid), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def create(self, **fields: Any) -> dict[str, Any]:
        resp = await self.request("POST", "/api/canvases", json=canvas_body(**fields))
        assert resp.status_code == 201, resp.text
        return resp.json()  # type: ignore[no-any-return]

    async def get(self, canvas_id: str) -> Response:
        return await self.request("GET", f"/api/canvases/{canvas_id}")
