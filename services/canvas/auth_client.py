"""The canvas service's one call to the auth service: which of these users still exist."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import aiohttp
import msgspec

from shared import internal_auth


class AuthUnavailable(Exception):
    """The auth service did not give a usable answer."""


class _Existing(msgspec.Struct):
    existing: list[uuid.UUID]


class AuthClient:
    def __init__(self, http: aiohttp.ClientSession, base_url: str, secret: bytes) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/internal/users/existing"
        self.secret = secret

    async def existing_users(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """POST /internal/users/existing (docs/api.md, "Internal"): which of `user_ids` still exist."""
        headers = {internal_auth.HEADER: internal_auth.sign(self.secret, audience="auth")}
        body = {"userIds": [str(u) for u in user_ids]}
        try:
            async with self.http.post(self.url, json=body, headers=headers) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    raise AuthUnavailable(f"auth service answered {resp.status}: {payload[:200]!r}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AuthUnavailable(f"auth service unreachable: {exc!r}") from exc
        try:
            return set(msgspec.json.decode(payload, type=_Existing).existing)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise AuthUnavailable(f"auth service answered an unexpected body: {exc}") from exc
