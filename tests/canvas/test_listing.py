"""Listings: filters, order, limits, and keyset cursors (opaque, tamper-evident, bound to their filters)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.canvas.support import Caller, insert_canvases, list_all, unique
from tests.support.problems import assert_problem


def newest_first(items: list[dict[str, Any]]) -> bool:
    keys = [(i["createdAt"], i["id"]) for i in items]
    return keys == sorted(keys, reverse=True)


async def test_public_listing_shows_public_canvases_only_without_code(
    alice: Caller, bob: Caller, anon: Caller
) -> None:
    tag = unique("tag")
    public = [await alice.create(isPublic=True, tags=[tag]) for _ in range(3)]
    await alice.create(tags=[tag])  # private
    public.append(await bob.create(isPublic=True, tags=[tag]))
    for caller in (anon, alice, bob):
        resp = await caller.request("GET", "/api/canvases", params={"tag": tag})
        assert resp.status_code == 200
        page = resp.json()
        assert list(page) == ["items", "nextCursor"]
        assert page["nextCursor"] is None
        assert [i["id"] for i in page["items"]] == [c["id"] for c in reversed(public)]
        assert all("code" not in i and i["isPublic"] for i in page["items"])
        assert set(page["items"][0]) == {
            "id", "title", "type", "description", "tags", "userId", "isPublic", "views", "createdAt",
            "updatedAt",
        }  # fmt: skip


async def test_filters_by_type_tag_and_user(alice: Caller, bob: Caller, anon: Caller) -> None:
    kind, tag = unique("type"), unique("tag")
    a1 = await alice.create(isPublic=True, type=kind, tags=[tag, "other"])
    a2 = await alice.create(isPublic=True, type=kind)
    a3 = await alice.create(isPublic=True, tags=[tag])
    b1 = await bob.create(isPublic=True, type=kind, tags=[tag])

    async def ids(**params: str) -> list[str]:
        return [i["id"] for i in await list_all(anon, "/api/canvases", **params)]

    assert await ids(type=kind) == [b1["id"], a2["id"], a1["id"]]
    assert await ids(tag=tag) == [b1["id"], a3["id"], a1["id"]]
    assert await ids(type=kind, tag=tag) == [b1["id"], a1["id"]]
    assert await ids(userId=alice.uid) == [a3["id"], a2["id"], a1["id"]]
    assert await ids(userId=alice.uid, type=kind, tag=tag) == [a1["id"]]
    assert await ids(userId=str(uuid.uuid4())) == []
    assert await ids(tag=unique("nothing")) == []


async def test_a_tag_filter_matches_newlines_and_spaces_exactly(alice: Caller, anon: Caller) -> None:
    tag = unique("two\nwords") + " "
    tagged = await alice.create(isPublic=True, tags=[tag])
    assert [i["id"] for i in await list_all(anon, "/api/canvases", tag=tag)] == [tagged["id"]]
    assert await list_all(anon, "/api/canvases", tag=tag.strip()) == []


async def test_my_listing_has_all_my_canvases_private_included(alice: Caller, bob: Caller) -> None:
    tag = unique("tag")
    mine = [await alice.create(isPublic=i % 2 == 0, tags=[tag], type="note") for i in range(4)]
    await bob.create(isPublic=True, tags=[tag])
    items = await list_all(alice, "/api/users/me/canvases")
    assert [i["id"] for i in items] == [c["id"] for c in reversed(mine)]
    assert {i["userId"] for i in items} == {alice.uid}
    assert [i["id"] for i in await list_all(alice, "/api/users/me/canvases", tag=tag, type="note")] == [
        c["id"] for c in reversed(mine)
    ]
    assert await list_all(alice, "/api/users/me/canvases", type="nothing-here") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"userId": "not-a-uuid"}, "userId"),
        ({"userId": "123"}, "userId"),
        ({"type": "Python"}, "type"),
        ({"type": "x" * 33}, "type"),
        ({"type": "p5\n"}, "type"),
        ({"type": "p5\x00"}, "type"),
        ({"tag": "x" * 33}, "tag"),
        ({"tag": "a\x00b"}, "tag"),  # PostgreSQL's text cannot hold U+0000: refused on both engines
    ],
)
async def test_malformed_query_values_are_422(anon: Caller, alice: Caller, params: dict, field: str) -> None:
    assert_problem(await anon.request("GET", "/api/canvases", params=params), 422, field)
    if field != "userId":
        assert_problem(await alice.request("GET", "/api/users/me/canvases", params=params), 422, field)


async def test_limit_bounds_and_default(alice: Caller) -> None:
    for _ in range(21):
        await alice.create()
    assert len((await alice.request("GET", "/api/users/me/canvases")).json()["items"]) == 20
    one = (await alice.request("GET", "/api/users/me/canvases", params={"limit": 1})).json()
    assert len(one["items"]) == 1
    assert one["nextCursor"]
    hundred = (await alice.request("GET", "/api/users/me/canvases", params={"limit": 100})).json()
    assert len(hundred["items"]) == 21
    assert hundred["nextCursor"] is None


async def test_pagination_over_many_pages_while_canvases_are_added(alice: Caller, bob: Caller) -> None:
    tag = unique("tag")
    existing = [await alice.create(isPublic=True, tags=[tag]) for _ in range(25)]
    expected = [c["id"] for c in reversed(existing)]
    stop = asyncio.Event()

    async def keep_adding() -> int:
        added = 0
        while not stop.is_set():
            await bob.create(isPublic=True, tags=[tag])
            added += 1
            await asyncio.sleep(0)
        return added

    adder = asyncio.create_task(keep_adding())
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"tag": tag, "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await alice.request("GET", "/api/canvases", params=params)).json()
        seen += [i["id"] for i in page["items"] if i["userId"] == alice.uid]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
        await asyncio.sleep(0)
    stop.set()
    added = await adder
    assert added > 0
    assert pages > 2
    assert seen == expected  # every original canvas once, in order: no duplicates, no gaps


async def test_ties_on_created_at_are_broken_by_id(alice: Caller) -> None:
    same = datetime(2020, 5, 17, 12, 0, 0, 123456, tzinfo=UTC)
    ids = await insert_canvases(uuid.UUID(alice.uid), 11, created_at=same)
    newer = await alice.create(isPublic=True)
    items = await list_all(alice, "/api/users/me/canvases", limit=3)
    assert [i["id"] for i in items] == [newer["id"], *sorted(map(str, ids), reverse=True)]
    assert newest_first(items)
    assert items[1]["createdAt"] == "2020-05-17T12:00:00.123456Z"


async def test_cursor_is_opaque_and_tamper_evident(alice: Caller) -> None:
    for _ in range(3):
        await alice.create(isPublic=True)
    page = (await alice.request("GET", "/api/users/me/canvases", params={"limit": 1})).json()
    cursor = page["nextCursor"]
    assert alice.uid not in cursor
    payload, mac = cursor.split(".")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    forged = b'["2999-01-01T00:00:00Z","' + str(uuid.uuid4()).encode() + b'","x"]'
    forged_payload = base64.urlsafe_b64encode(forged)
    for bad in [
        f"{flipped}.{mac}",
        f"{payload}.{mac[:-1]}",
        f"{forged_payload.decode().rstrip('=')}.{mac}",
        payload,
        "garbage",
        "",
        "é.ü",
        "a.b.c",
    ]:
        resp = await alice.request("GET", "/api/users/me/canvases", params={"limit": 1, "cursor": bad})
        assert_problem(resp, 400)
    ok = await alice.request("GET", "/api/users/me/canvases", params={"limit": 2, "cursor": cursor})
    assert ok.status_code == 200  # the page size may change between pages


async def test_cursor_is_bound_to_its_listing_and_filters(alice: Caller, bob: Caller) -> None:
    kind = unique("type")
    for _ in range(3):
        await alice.create(isPublic=True, type=kind, tags=["t"])
    public = (await alice.request("GET", "/api/canvases", params={"type": kind, "limit": 1})).json()
    mine = (await alice.request("GET", "/api/users/me/canvases", params={"limit": 1})).json()
    cursor, my_cursor = public["nextCursor"], mine["nextCursor"]
    for caller, path, params in [
        (alice, "/api/canvases", {"cursor": cursor}),
        (alice, "/api/canvases", {"cursor": cursor, "type": "other"}),
        (alice, "/api/canvases", {"cursor": cursor, "type": kind, "tag": "t"}),
        (alice, "/api/canvases", {"cursor": cursor, "type": kind, "userId": alice.uid}),
        (alice, "/api/users/me/canvases", {"cursor": cursor, "type": kind}),
        (alice, "/api/canvases", {"cursor": my_cursor}),
        (bob, "/api/users/me/canvases", {"cursor": my_cursor}),
    ]:
        assert_problem(await caller.request("GET", path, params=params), 400)
    same = await bob.request("GET", "/api/canvases", params={"cursor": cursor, "type": kind})
    assert same.status_code == 200
    assert len(same.json()["items"]) == 2


async def test_listed_views_include_buffered_reads(alice: Caller, anon: Caller) -> None:
    canvas = await alice.create(isPublic=True)
    for _ in range(3):
        assert (await anon.get(canvas["id"])).status_code == 200
    items = (await anon.request("GET", "/api/canvases", params={"userId": alice.uid})).json()["items"]
    assert items[0]["views"] == 3
