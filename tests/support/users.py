"""Users as clients see them, for the end-to-end and resilience tests: sign up, call the gateway as them."""

from __future__ import annotations

import secrets
from typing import Any

from tests.support.http import Client, Reply, bearer

PASSWORD = "correct horse battery"


class User:
    def __init__(self, http: Client, base: str, email: str, token: str, body: dict[str, Any]) -> None:
        self.http = http
        self.base = base
        self.email = email
        self.token = token
        self.id: str = body["user"]["id"]

    async def call(self, method: str, path: str, **kwargs: Any) -> Reply:
        headers = {**bearer(self.token), **kwargs.pop("headers", {})}
        return await self.http(method, self.base + path, headers=headers, **kwargs)

    async def canvas(self, **fields: Any) -> dict[str, Any]:
        body = {"title": "A canvas", "type": "p5", "code": "draw()", **fields}
        reply = await self.call("POST", "/api/canvases", json=body)
        assert reply.status == 201, reply.body
        return reply.json()  # type: ignore[no-any-return]


def new_email() -> str:
    return f"e2e-{secrets.token_hex(6)}@example.com"


async def signup(http: Client, base: str, email: str | None = None, password: str = PASSWORD) -> User:
    email = email or new_email()
    reply = await http("POST", f"{base}/api/auth/signup", json={"email": email, "password": password})
    assert reply.status == 201, reply.body
    return User(http, base, email, reply.json()["token"], reply.json())


async def login(http: Client, base: str, email: str, password: str = PASSWORD) -> Reply:
    return await http("POST", f"{base}/api/auth/login", json={"email": email, "password": password})
