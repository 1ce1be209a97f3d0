"""GET /internal/forward-auth: a proxy's auth_request gets the signed credential for a live session only."""

from __future__ import annotations

import httpx
import pytest

from shared import internal_auth
from tests.auth.support import Account, Api, auth_settings


async def test_a_live_bearer_token_gets_a_credential_for_its_own_user(
    client: httpx.AsyncClient, account: Account
) -> None:
    resp = await client.get(
        "/internal/forward-auth",
        headers={
            "Authorization": f"Bearer {account.token}",
            "X-Request-Id": "fwd-1",
            "X-Original-URI": "/api/canvases/abc?x=1",
        },
    )
    assert resp.status_code == 204
    cred = internal_auth.verify(
        auth_settings().secret, resp.headers[internal_auth.HEADER], audiences={"canvas"}
    )
    assert (cred.uid, cred.sid, cred.rid) == (account.uid, account.sid, "fwd-1")
    assert cred.api  # only for the public /api routes


@pytest.mark.parametrize(
    ("uri", "audience"),
    [
        ("/api/canvases", "canvas"),
        ("/api/users/me/canvases?limit=1", "canvas"),
        ("/api/users/me", "auth"),
        ("/api/auth/sessions", "auth"),
        ("/internal/users/existing", None),
        ("/api/canvasesx", None),
        ("/api/canvases/../../internal/users/existing", None),
        ("", None),
        (None, None),
    ],
)
async def test_the_credential_is_for_the_service_owning_the_original_path(
    client: httpx.AsyncClient, account: Account, uri: str | None, audience: str | None
) -> None:
    headers = {"Authorization": f"Bearer {account.token}"}
    if uri is not None:
        headers["X-Forwarded-Uri"] = uri
    resp = await client.get("/internal/forward-auth", headers=headers)
    if audience is None:
        assert resp.status_code == 403
        assert internal_auth.HEADER not in resp.headers
        return
    assert resp.status_code == 204
    cred = internal_auth.verify(
        auth_settings().secret, resp.headers[internal_auth.HEADER], audiences={audience}
    )
    assert cred.aud == audience


async def test_a_forward_auth_credential_opens_no_internal_route(
    client: httpx.AsyncClient, account: Account
) -> None:
    """Issue 14: the credential forward-auth minted also opened /internal/users/existing."""
    headers = {"Authorization": f"Bearer {account.token}", "X-Forwarded-Uri": "/api/users/me"}
    cred = (await client.get("/internal/forward-auth", headers=headers)).headers[internal_auth.HEADER]
    me = await client.get("/api/users/me", headers={internal_auth.HEADER: cred})
    assert me.status_code == 200
    for method, path in (("POST", "/internal/users/existing"), ("POST", "/internal/sessions/validate")):
        resp = await client.request(method, path, headers={internal_auth.HEADER: cred}, json={"userIds": []})
        assert resp.status_code == 401, (path, resp.text)
        assert "public API" in resp.json()["detail"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer " + "a" * 32, "Bearer not-a-token\x7f"],
)
async def test_no_credential_without_a_live_session(
    client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    headers["X-Forwarded-Uri"] = "/api/canvases"
    resp = await client.get("/internal/forward-auth", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert internal_auth.HEADER not in resp.headers


async def test_a_revoked_session_gets_no_credential(
    client: httpx.AsyncClient, api: Api, account: Account
) -> None:
    assert (await api.call("POST", "/api/auth/logout", session=account)).status_code == 204
    headers = {"Authorization": f"Bearer {account.token}", "X-Forwarded-Uri": "/api/canvases"}
    resp = await client.get("/internal/forward-auth", headers=headers)
    assert resp.status_code == 401


async def test_other_internal_routes_still_need_the_credential(client: httpx.AsyncClient) -> None:
    resp = await client.post("/internal/users/existing", json={"userIds": []})
    assert resp.status_code == 401
