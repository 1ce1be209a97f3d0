"""The few public API calls the harness makes to set a scenario up (through the gateway, like a client)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

PASSWORD = "bench-password-1234"  # throwaway accounts in a throwaway database
CODE = "function setup() {\n  createCanvas(400, 400);\n}\n\nfunction draw() {\n  background(220);\n}\n" * 8


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: str
    token: str

    @property
    def session_id(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class ApiError(RuntimeError):
    pass


class Api:
    def __init__(self, session: aiohttp.ClientSession, gateway_url: str) -> None:
        self.http = session
        self.base = gateway_url

    async def call(
        self, method: str, path: str, *, expect: int, json: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        async with self.http.request(method, self.base + path, json=json, headers=headers) as resp:
            body = await resp.read()
            if resp.status != expect:
                raise ApiError(f"{method} {path}: {resp.status} (expected {expect}): {body[:300]!r}")
            return await resp.json() if body else None

    async def signup(self, label: str = "user") -> Account:
        email = f"bench-{label}-{secrets.token_hex(5)}@example.com"
        data = await self.call(
            "POST", "/api/auth/signup", expect=201, json={"email": email, "password": PASSWORD, "name": label}
        )
        return Account(email, PASSWORD, data["user"]["id"], data["token"])

    async def create_canvas(self, owner: Account, *, public: bool, title: str = "Bench canvas") -> str:
        body = {"title": title, "type": "p5js", "code": CODE, "tags": ["bench"], "isPublic": public}
        data = await self.call("POST", "/api/canvases", expect=201, json=body, headers=owner.bearer)
        return str(data["id"])

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        return await self.call("GET", path, expect=200, headers=headers)

    async def delete_user(self, account: Account) -> None:
        await self.call(
            "DELETE", "/api/users/me", expect=204, json={"password": account.password}, headers=account.bearer
        )
