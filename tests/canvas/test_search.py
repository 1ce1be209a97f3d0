"""Search (`q=` on both listings) against an exact oracle: a Python filter over the same canvases.

The oracle is written from the rule in the docs, not from services/canvas/search.py: a word is a
maximal run of characters for which `str.isalnum()` holds, words compare by `str.casefold()`, every
word of `q` must be a word of the title, the description or one of the tags, the last as a prefix.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from services.canvas.view_counter import ViewCounter
from tests.canvas.support import SECRET, Caller, insert_canvases, list_all, unique
from tests.support.problems import assert_problem


def oracle_words(text: str) -> list[str]:
    found, current = [], ""
    for char in text + " ":
        if char.isalnum():
            current += char
        elif current:
            found.append(current.casefold())
            current = ""
    return found


def oracle_matches(canvas: dict[str, Any], q: str) -> bool:
    wanted = oracle_words(q)
    if not wanted:
        return True
    have = set(oracle_words(canvas["title"]) + oracle_words(canvas["description"]))
    for tag in canvas["tags"]:
        have.update(oracle_words(tag))
    *whole, last = wanted
    return all(word in have for word in whole) and any(word.startswith(last) for word in have)


VOCABULARY = [
    "Python", "python3", "PyTorch", "p5js", "sketch", "Sketching", "draw", "drawing", "noise",
    "Perlin", "perlin-noise", "fractal", "Fractals", "ray_tracer", "RayMarch", "shader", "GLSL",
    "café", "Cafe", "straße", "STRASSE", "Ωmega", "ωmega", "日本語", "데이터", "x", "42", "4.2",
    "v1.2.3", "a.b@example.com", "http://x.org/path", "C++", "C#", "foo's", "über", "naïve",
    "l33t", "O'Reilly", "#hash", "100%", "e=mc²", "½", "ⅷ", "tab\there", "new\nline",
]  # fmt: skip
QUERIES = [
    "python", "PYTHON", "pyth", "py", "p", "python3", "python 3", "sketch", "sketc", "sketching draw",
    "draw sketch", "perlin noise", "perlin-noise", "noise perlin", "Fractal", "fractals", "ray",
    "ray_tracer", "tracer", "raymarch", "glsl shader", "café", "cafe", "caf", "straße", "strasse",
    "STRASS", "ωmega", "ΩMEGA", "日本", "데이", "x", "42", "4", "4.2", "2", "v1", "v1.2.3", "1 2 3",
    "a.b@example.com", "example", "com", "http", "org path", "c++", "c", "foo's", "s", "über", "uber",
    "naïve", "naive", "l33t", "o'reilly", "reilly", "hash", "100", "mc²", "mc", "½", "ⅷ", "tab",
    "here tab", "line new", "nothing", "pythonx", "python nothing", "zzz", "sketch zzz",
    # hostile to either query language: must be plain words or separators, never syntax
    "\"", "'", "*", ":*", "python:*", "py*", "a & b", "!python", "python | draw", "(python)",
    "NEAR(python draw)", "python AND draw", "python OR zzz", "NOT zzz", "-python", "python^",
    "\\", "'python'", "\"python\"", "python'--", "%", "_", "__", "\x00", "py\x00thon", "🙂", "🙂python",
    " ", "...", "'\\'", "a'b", "col:python", "words:python", "{python}",
]  # fmt: skip


async def _seed(caller: Caller, count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        title = " ".join(rng.sample(VOCABULARY, rng.randint(1, 3)))
        description = rng.choice(["", " ".join(rng.sample(VOCABULARY, rng.randint(1, 5)))])
        tags = rng.sample(VOCABULARY[:30], rng.randint(0, 2))
        made.append(await caller.create(title=title, description=description, tags=tags, isPublic=True))
    return made


async def test_search_agrees_with_the_oracle_on_both_listings(alice: Caller, anon: Caller) -> None:
    made = await _seed(alice, 60, seed=17)
    newest_first = list(reversed(made))
    matched_some = 0
    for q in QUERIES:
        expected = [c["id"] for c in newest_first if oracle_matches(c, q)]
        matched_some += 0 < len(expected) < len(made)
        mine = await list_all(alice, "/api/users/me/canvases", q=q, limit=7)
        assert [i["id"] for i in mine] == expected, q
        public = await list_all(anon, "/api/canvases", q=q, userId=alice.uid, limit=100)
        assert [i["id"] for i in public] == expected, q
    assert matched_some > len(QUERIES) // 2  # the queries discriminate, not all-or-nothing


async def test_search_combines_with_type_tag_and_visibility(alice: Caller, bob: Caller, anon: Caller) -> None:
    word, kind, tag = unique("word").replace("-", ""), unique("type"), unique("tag")
    a1 = await alice.create(title=f"{word} one", type=kind, tags=[tag], isPublic=True)
    await alice.create(title=f"{word} two", type=kind, isPublic=True)
    a3 = await alice.create(title="three", description=f"about {word.upper()}", tags=[tag], isPublic=True)
    a4 = await alice.create(title=f"{word} private", tags=[tag])
    b1 = await bob.create(title="bob's", tags=[word, tag], isPublic=True)

    async def ids(caller: Caller, path: str, **params: str) -> list[str]:
        return [i["id"] for i in await list_all(caller, path, **params)]

    assert await ids(anon, "/api/canvases", q=word, tag=tag) == [b1["id"], a3["id"], a1["id"]]
    assert await ids(anon, "/api/canvases", q=word, tag=tag, type=kind) == [a1["id"]]
    assert await ids(anon, "/api/canvases", q=word, tag=tag, userId=bob.uid) == [b1["id"]]
    assert await ids(anon, "/api/canvases", q=f"{word} one two") == []
    assert await ids(alice, "/api/users/me/canvases", q=word, tag=tag) == [a4["id"], a3["id"], a1["id"]]
    assert await ids(bob, "/api/users/me/canvases", q=word) == [b1["id"]]


async def test_changes_and_deletions_are_searched_at_once(alice: Caller) -> None:
    old, new, tag = (unique(p).replace("-", "") for p in ("old", "new", "tagword"))
    canvas = await alice.create(title=f"{old} title")
    path = f"/api/canvases/{canvas['id']}"

    async def found(q: str) -> list[str]:
        return [i["id"] for i in await list_all(alice, "/api/users/me/canvases", q=q)]

    assert await found(old) == [canvas["id"]]
    assert (await alice.request("PATCH", path, json={"title": f"{new} title"})).status_code == 200
    assert await found(old) == []
    assert await found(new) == [canvas["id"]]
    assert (await alice.request("PATCH", path, json={"tags": [tag], "code": "x"})).status_code == 200
    assert await found(f"{new} {tag}") == [canvas["id"]]
    assert (await alice.request("PATCH", path, json={"isPublic": True})).status_code == 200
    assert await found(f"{tag} {new}") == [canvas["id"]]
    assert (await alice.request("PATCH", path, json={"description": old, "tags": []})).status_code == 200
    assert await found(tag) == []
    assert await found(f"{old} {new}") == [canvas["id"]]
    assert (await alice.request("DELETE", path)).status_code == 204
    assert await found(new) == []


async def test_paging_through_a_search_and_its_cursor_is_bound_to_q(alice: Caller, anon: Caller) -> None:
    word = unique("page").replace("-", "")
    owner = uuid.UUID(alice.uid)
    await insert_canvases(owner, 45, title=f"{word} common")
    await insert_canvases(owner, 30, title="other")
    hits = await list_all(anon, "/api/canvases", q=word, userId=alice.uid, limit=10)
    assert len(hits) == 45
    assert len({i["id"] for i in hits}) == 45
    assert [(i["createdAt"], i["id"]) for i in hits] == sorted(
        ((i["createdAt"], i["id"]) for i in hits), reverse=True
    )
    first = (await anon.request("GET", "/api/canvases", params={"q": word, "limit": 10})).json()
    cursor = first["nextCursor"]
    assert cursor
    for params in ({"q": word + "x"}, {"q": word.upper()}, {}, {"q": word, "type": "bulk"}):
        resp = await anon.request("GET", "/api/canvases", params={**params, "cursor": cursor})
        assert_problem(resp, 400)
    assert (
        await anon.request("GET", "/api/canvases", params={"q": word, "cursor": cursor})
    ).status_code == 200


@pytest.mark.parametrize("q", ["", "x" * 201])
async def test_q_outside_1_to_200_characters_is_422(anon: Caller, alice: Caller, q: str) -> None:
    assert_problem(await anon.request("GET", "/api/canvases", params={"q": q}), 422, "q")
    assert_problem(await alice.request("GET", "/api/users/me/canvases", params={"q": q}), 422, "q")


async def test_long_words_and_a_200_character_q(alice: Caller) -> None:
    long_word = "é" * 1000 + "z"  # 2,001 bytes folded: over PostgreSQL's lexeme limit whole
    canvas = await alice.create(title="long", description=long_word)
    for q, hit in [
        ("é" * 200, True),
        ("É" * 199 + "z", False),
        ("long " + "é" * 195, True),
        ("é" * 199 + "z", False),
    ]:
        found = [i["id"] for i in await list_all(alice, "/api/users/me/canvases", q=q)]
        assert found == ([canvas["id"]] if hit else []), q
        assert hit == oracle_matches(canvas, q)


async def test_the_migration_fills_the_words_of_canvases_that_existed_before_it(
    alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows without words (as before the migration) are found once the migration's fill has run."""
    import importlib

    from services.canvas.tables import Canvas

    monkeypatch.setenv("PICCOLO_CONF", "services.canvas.piccolo_conf")
    migration = importlib.import_module(
        "services.canvas.piccolo_migrations.canvas_2026_12_04t17_00_00_000000"
    )
    word = unique("before").replace("-", "")
    ids = await insert_canvases(uuid.UUID(alice.uid), 3, title=f"Made {word}", tags=["Old-Tag"])
    await Canvas.update({Canvas.search_text: ""}).where(Canvas.id.is_in(ids)).run()
    assert await list_all(alice, "/api/users/me/canvases", q=word) == []
    await migration._fill()
    found = await list_all(alice, "/api/users/me/canvases", q=f"{word.upper()} old ta")
    assert sorted(i["id"] for i in found) == sorted(str(i) for i in ids)


@pytest.mark.parametrize("window", [1, 3, 10])
async def test_every_plan_agrees_with_the_oracle(alice: Caller, views: ViewCounter, window: int) -> None:
    """On SQLite a search examines a window of the listing's order, then asks FTS5 for the rest:
    with windows from one canvas up, pages cross that edge everywhere (PostgreSQL: one query)."""
    from services.canvas import canvases
    from services.canvas.canvases import Listing
    from services.canvas.cursors import CursorCodec

    cursors = CursorCodec(SECRET)
    made = await _seed(alice, 30, seed=window)
    newest_first = list(reversed(made))
    for q in ["python", "sketch", "perlin noise", "x", "p", "zzz", "c", "draw sketch", "日本", "ωmega"]:
        expected = [c["id"] for c in newest_first if oracle_matches(c, q)]
        found: list[str] = []
        cursor = None
        while True:
            page = await canvases.list_canvases(
                views,
                cursors,
                Listing(public_only=False, owner=uuid.UUID(alice.uid), q=q),
                limit=4,
                cursor=cursor,
                window=window,
            )
            found += [item.id for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert found == expected, (q, window)
