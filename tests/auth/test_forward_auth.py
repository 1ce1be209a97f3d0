"""GET /internal/forward-auth: a proxy's auth_request gets the signed credential for a live session only."""

from __future__ import annotations

import httpx
import pytest

from services.auth.settings import settings
from shared import internal_auth
from tests.auth.support import Account, Api


async def test_a_live_bearer_token_gets_a_credential_for_its_own_user(
    client: httpx.AsyncClient, account: Account
) -> None:
    resp = await client.get(
        "/internal/forward-auth",
        headers={"Authorization": f"Bearer {account.token}", "X-Request-Id": "fwd-1"},
    )
    assert resp.status_code == 204
    cred = internal_auth.verify(settings.secret, resp.headers[internal_auth.HEADER])
    assert (cred.uid, cred.sid, cred.rid) == (account.uid, account.sid, "fwd-1")


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer " + "a" * 32, "Bearer not-a-token\x7f"],
)
async def test_no_credential_without_a_live_session(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    resp = await client.get("/internal/forward-auth", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert internal_auth.HEADER not in resp.headers


async def test_a_revoked_session_gets_no_credential(
    client: httpx.AsyncClient, api: Api, account: Account
) -> None:
    assert (await api.call("POST", "/api/auth/logout", session=account)).status_code == 204
    resp = await client.get("/internal/forward-auth", headers={"Authorization": f"Bearer {account.token}"})
    assert resp.status_code == 401


async def test_other_internal_routes_still_need_the_credential(client: httpx.AsyncClient) -> None:
    resp = await client.post("/internal/users/existing", json={"userIds": []})
    assert resp.status_code == 401
