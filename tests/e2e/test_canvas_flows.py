"""Every canvas flow of docs/api.md through the gateway, and the user.deleted cascade end to end."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.support.http import ALLOWED_ORIGIN, Client, cookie
from tests.support.system import System
from tests.support.users import PASSWORD, signup

pytestmark = pytest.mark.e2e


async def test_create_read_update_delete(http: Client, system: System) -> None:
    owner, stranger = await signup(http, system.url), await signup(http, system.url)
    created = await owner.canvas(title="Mine", tags=["a", "b", "a"])
    assert (created["views"], created["isPublic"], created["userId"], created["tags"]) == (
        0,
        False,
        owner.id,
        ["a", "b"],
    )
    path = f"/api/canvases/{created['id']}"
    assert (await owner.call("GET", path)).json()["views"] == 1
    assert (await http("GET", system.url + path)).status == 404  # private: invisible to anonymous callers
    assert (await stranger.call("GET", path)).status == 404
    assert (await stranger.call("PATCH", path, json={"title": "x"})).status == 404
    public = await owner.call("PATCH", path, json={"isPublic": True, "title": "Shared"})
    assert (public.status, public.json()["title"]) == (200, "Shared")
    anonymous = await http("GET", system.url + path)
    assert (anonymous.status, anonymous.json()["views"]) == (200, 2)
    assert (await http("HEAD", system.url + path)).status == 200
    assert (await http("GET", system.url + path)).json()["views"] == 3  # HEAD counted nothing
    assert (await stranger.call("PATCH", path, json={"title": "x"})).status == 403
    assert (await stranger.call("DELETE", path)).status == 403
    assert (await owner.call("DELETE", path)).status == 204
    assert (await owner.call("GET", path)).status == 404


async def test_validation_and_ids(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    for body, field in (
        ({"title": "", "type": "p5", "code": ""}, "title"),
        ({"title": "t", "type": "P 5", "code": ""}, "type"),
        ({"title": "t", "type": "p5", "code": "", "views": 3}, "views"),
        ({"title": "t", "type": "p5", "code": "", "extra": 1}, "extra"),
        ({"title": None, "type": "p5", "code": ""}, "title"),
    ):
        reply = await user.call("POST", "/api/canvases", json=body)
        assert reply.status == 422, body
        assert field in reply.json()["detail"]
    assert (
        await user.call(
            "POST", "/api/canvases", data=b"{not json", headers={"Content-Type": "application/json"}
        )
    ).status == 400
    assert (await user.call("GET", "/api/canvases/not-a-uuid")).status == 404
    assert (await user.call("GET", f"/api/canvases/{uuid.uuid4()}")).status == 404


async def test_lists_filters_and_pages(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    kind = f"t{uuid.uuid4().hex[:8]}"
    made = [
        await user.canvas(type=kind, isPublic=i % 2 == 0, tags=["even"] if i % 2 == 0 else [])
        for i in range(5)
    ]
    public = [c["id"] for c in reversed(made) if c["isPublic"]]
    page = (await http("GET", f"{system.url}/api/canvases?type={kind}&limit=2")).json()
    assert [c["id"] for c in page["items"]] == public[:2]
    assert "code" not in page["items"][0]
    rest = (
        await http("GET", f"{system.url}/api/canvases?type={kind}&limit=2&cursor={page['nextCursor']}")
    ).json()
    assert [c["id"] for c in rest["items"]] == public[2:]
    assert rest["nextCursor"] is None
    assert (
        await http("GET", f"{system.url}/api/canvases?type=other&cursor={page['nextCursor']}")
    ).status == 400
    assert (await http("GET", f"{system.url}/api/canvases?userId=nope")).status == 422
    by_owner = (await http("GET", f"{system.url}/api/canvases?userId={user.id}&tag=even")).json()["items"]
    assert {c["id"] for c in by_owner} == set(public)
    mine = (await user.call("GET", "/api/users/me/canvases?limit=100")).json()["items"]
    assert [c["id"] for c in mine] == [c["id"] for c in reversed(made)]
    assert (await http("GET", f"{system.url}/api/users/me/canvases")).status == 401


async def test_deleting_the_account_deletes_its_canvases(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    ids = [(await user.canvas(isPublic=True))["id"] for _ in range(3)]
    assert (await user.call("DELETE", "/api/users/me", json={"password": "wrong one"})).status == 403
    reply = await http(
        "DELETE",
        f"{system.url}/api/users/me",
        json={"password": PASSWORD},
        headers={**cookie(user.token), "Origin": ALLOWED_ORIGIN},
    )
    assert reply.status == 204
    assert "Max-Age=0" in reply.headers["Set-Cookie"]
    assert (await user.call("GET", "/api/users/me")).status == 401
    assert (
        await user.call("POST", "/api/canvases", json={"title": "t", "type": "p5", "code": ""})
    ).status == 401
    for _ in range(100):  # relay → stream → canvas consumer, "within seconds"
        listed = (await http("GET", f"{system.url}/api/canvases?userId={user.id}")).json()["items"]
        if not listed:
            break
        await asyncio.sleep(0.1)
    assert listed == []
    for canvas_id in ids:
        assert (await http("GET", f"{system.url}/api/canvases/{canvas_id}")).status == 404


async def test_search_and_safe_edits_through_the_gateway(http: Client, system: System) -> None:
    user = await signup(http, system.url)
    word = f"w{uuid.uuid4().hex[:10]}"
    made = [await user.canvas(title=f"{word.upper()} number {i}", isPublic=True) for i in range(3)]
    search = f"{system.url}/api/canvases?q={word[:6]}&userId={user.id}&limit=2"
    first = (await http("GET", search)).json()
    assert [c["id"] for c in first["items"]] == [made[2]["id"], made[1]["id"]]
    rest = (await http("GET", f"{search}&cursor={first['nextCursor']}")).json()
    assert [c["id"] for c in rest["items"]] == [made[0]["id"]]
    other_q = await http(
        "GET", f"{system.url}/api/canvases?q=number&userId={user.id}&cursor={first['nextCursor']}"
    )
    assert other_q.status == 400
    assert (await http("GET", f"{system.url}/api/canvases?q=")).status == 422
    path = f"/api/canvases/{made[0]['id']}"
    read = await http("GET", system.url + path)
    tag = read.headers["ETag"]
    changed = await user.call("PATCH", path, json={"title": "new"}, headers={"If-Match": tag})
    assert changed.status == 200
    assert changed.headers["ETag"] != tag
    stale = await user.call("PATCH", path, json={"title": "lost"}, headers={"If-Match": tag})
    assert stale.status == 412
    assert stale.headers["Content-Type"] == "application/problem+json"
    assert (await user.call("DELETE", path, headers={"If-Match": tag})).status == 412
    assert (await user.call("DELETE", path, headers={"If-Match": changed.headers["ETag"]})).status == 204
