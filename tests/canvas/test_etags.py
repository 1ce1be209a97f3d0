"""Strong ETags on canvas answers and If-Match on PATCH/DELETE (412, atomically; RFC 9110)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from services.canvas.view_counter import DOC_PREFIX
from tests.canvas.support import Caller, signed
from tests.support.problems import assert_problem


def path(canvas: dict) -> str:  # type: ignore[type-arg]
    return f"/api/canvases/{canvas['id']}"


async def tagged(alice: Caller, **fields: object) -> tuple[dict, str]:  # type: ignore[type-arg]
    resp = await alice.request(
        "POST", "/api/canvases", json={"title": "T", "type": "python", "code": "", **fields}
    )
    assert resp.status_code == 201
    return resp.json(), resp.headers["etag"]


async def test_answers_carry_a_strong_etag_that_changes_with_content_not_views(
    alice: Caller, anon: Caller, redis: Redis
) -> None:
    canvas, created = await tagged(alice, isPublic=True)
    assert created.startswith('"')
    assert created.endswith('"')
    first = await anon.get(canvas["id"])  # a miss: from the database, then cached
    assert await redis.exists(DOC_PREFIX + canvas["id"])
    second = await anon.get(canvas["id"])  # a hit: from the read cache
    assert first.json()["views"] == 1
    assert second.json()["views"] == 2
    assert first.headers["etag"] == second.headers["etag"] == created
    head = await anon.request("HEAD", path(canvas))
    assert head.headers["etag"] == created
    patched = await alice.request("PATCH", path(canvas), json={"code": "changed"})
    assert patched.status_code == 200
    assert patched.headers["etag"] not in (created, None)
    for _ in range(2):  # the cached doc was dropped with its ETag: miss, then hit, both the new one
        assert (await anon.get(canvas["id"])).headers["etag"] == patched.headers["etag"]
    again = await alice.request("PATCH", path(canvas), json={"isPublic": True})
    assert again.headers["etag"] not in (created, patched.headers["etag"])
    _, other_tag = await tagged(alice)
    assert other_tag != created  # tags of different canvases differ


async def test_if_match_on_patch(alice: Caller) -> None:
    canvas, tag = await tagged(alice)
    stale = tag
    resp = await alice.request("PATCH", path(canvas), json={"title": "one"}, headers={"If-Match": tag})
    assert resp.status_code == 200
    tag = resp.headers["etag"]
    for bad in (stale, f"W/{tag}", tag.strip('"'), "garbage", '"x", "y"', f'"{uuid.uuid4()}.2"', '""'):
        resp = await alice.request("PATCH", path(canvas), json={"title": "lost"}, headers={"If-Match": bad})
        assert_problem(resp, 412)
    for empty_body_bad in (stale, "nonsense"):
        assert_problem(
            await alice.request("PATCH", path(canvas), json={}, headers={"If-Match": empty_body_bad}), 412
        )
    current = await alice.get(canvas["id"])
    assert current.json()["title"] == "one"
    assert current.headers["etag"] == tag
    unchanged = await alice.request("PATCH", path(canvas), json={}, headers={"If-Match": tag})
    assert unchanged.status_code == 200
    assert unchanged.headers["etag"] == tag
    listed = await alice.request(
        "PATCH", path(canvas), json={"title": "two"}, headers={"If-Match": f'"a", {tag}'}
    )
    assert listed.status_code == 200
    star = await alice.request("PATCH", path(canvas), json={"title": "three"}, headers={"If-Match": "*"})
    assert star.status_code == 200
    lines = [("If-Match", stale), ("If-Match", star.headers["etag"])]  # two lines are one list
    resp = await alice.client.request(
        "PATCH", path(canvas), json={"title": "four"}, headers=[*signed(alice.uid).items(), *lines]
    )
    assert resp.status_code == 200
    assert (await alice.get(canvas["id"])).json()["title"] == "four"


async def test_if_match_on_delete(alice: Caller) -> None:
    canvas, tag = await tagged(alice)
    changed = await alice.request("PATCH", path(canvas), json={"code": "x"})
    assert_problem(await alice.request("DELETE", path(canvas), headers={"If-Match": tag}), 412)
    assert (await alice.get(canvas["id"])).status_code == 200
    resp = await alice.request("DELETE", path(canvas), headers={"If-Match": changed.headers["etag"]})
    assert resp.status_code == 204
    assert (await alice.get(canvas["id"])).status_code == 404
    other, _ = await tagged(alice)
    assert (await alice.request("DELETE", path(other), headers={"If-Match": "*"})).status_code == 204


async def test_if_match_never_hides_404_or_403(alice: Caller, bob: Caller) -> None:
    """Preconditions are evaluated only where the request would otherwise succeed (RFC 9110 13.2.1)."""
    public, tag = await tagged(alice, isPublic=True)
    private, private_tag = await tagged(alice)
    for method in ("PATCH", "DELETE"):
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        for header in (tag, '"stale"', "*"):
            assert_problem(
                await bob.request(method, path(public), headers={"If-Match": header}, **kwargs), 403
            )
        for header in (private_tag, "*"):
            assert_problem(
                await bob.request(method, path(private), headers={"If-Match": header}, **kwargs), 404
            )
            gone = f"/api/canvases/{uuid.uuid4()}"
            assert_problem(await alice.request(method, gone, headers={"If-Match": header}, **kwargs), 404)


@pytest.mark.parametrize("rounds", [8])
async def test_concurrent_patches_with_the_same_etag_one_wins_one_is_412(alice: Caller, rounds: int) -> None:
    canvas, tag = await tagged(alice)
    for round_ in range(rounds):
        first, second = await asyncio.gather(
            *(
                alice.request(
                    "PATCH", path(canvas), json={"title": f"{round_}-{who}"}, headers={"If-Match": tag}
                )
                for who in ("a", "b")
            )
        )
        assert sorted([first.status_code, second.status_code]) == [200, 412]
        winner = first if first.status_code == 200 else second
        loser = second if winner is first else first
        assert_problem(loser, 412)
        now = await alice.get(canvas["id"])
        assert now.json()["title"] == winner.json()["title"]
        assert now.headers["etag"] == winner.headers["etag"] != tag
        tag = winner.headers["etag"]


async def test_concurrent_delete_and_patch_with_the_same_etag(alice: Caller) -> None:
    canvas, tag = await tagged(alice)
    patched, deleted = await asyncio.gather(
        alice.request("PATCH", path(canvas), json={"title": "p"}, headers={"If-Match": tag}),
        alice.request("DELETE", path(canvas), headers={"If-Match": tag}),
    )
    assert (patched.status_code, deleted.status_code) in [(200, 412), (404, 204)]
    exists = (await alice.get(canvas["id"])).status_code == 200
    assert exists == (patched.status_code == 200)
