"""Steering the stub upstream (tests/support/stub_service.py) through its /stub routes."""

from __future__ import annotations

import os
from typing import Any

from shared import internal_auth
from shared.tokens import session_id_of
from tests.support.http import Client

STUB_APP = "tests.support.stub_service:app"


def credential(**claims: Any) -> dict[str, str]:
    """An internal credential (for the auth audience unless `audience=` says otherwise)."""
    return {
        internal_auth.HEADER: internal_auth.sign(
            os.environ["INTERNAL_SECRET"].encode(), **{"audience": "auth", **claims}
        )
    }


class Stub:
    """Steers the stub upstream through its /stub routes."""

    def __init__(self, http: Client, url: str) -> None:
        self.http = http
        self.url = url

    async def session(self, user_id: str = "user-1", lifetime: int = 30 * 86400) -> tuple[str, str]:
        """A new session: (token, session id)."""
        reply = await self.http(
            "POST",
            f"{self.url}/stub/sessions",
            json={"userId": user_id, "lifetime": lifetime},
            headers=credential(),
        )
        token = reply.json()["token"]
        return token, session_id_of(token)

    async def revoke(self, session_id: str) -> None:
        await self.http(
            "POST", f"{self.url}/stub/revoke", json={"sessionId": session_id}, headers=credential()
        )

    async def state(self, **changes: Any) -> dict[str, Any]:
        if changes:
            reply = await self.http("POST", f"{self.url}/stub/state", json=changes, headers=credential())
        else:
            reply = await self.http("GET", f"{self.url}/stub/state", headers=credential())
        return reply.json()  # type: ignore[no-any-return]
