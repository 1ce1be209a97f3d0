"""Hostile input (issue 7): every public route tried with random and boundary values.

Two tools, two oracles:
- schemathesis, driven by the gateway's OpenAPI document, over every public route: its coverage
  phase (the boundary values of every constraint, and values just outside them) and its stateful
  phase (chains of calls along the document's links), with every conformance check it has but one:
  no 5xx, no answer that contradicts the document, no schema-invalid input accepted, no route
  ignoring its authentication, no resource usable after its deletion, no other user's object
  reachable. (No response-time limit either: that is a timer, not conformance.)
  (`positive_data_acceptance` is left out: a cursor is opaque, so the document cannot say which
  strings are valid cursors, and a malformed one is 400 by contract.)
- hypothesis, with docs/api.md itself as the oracle: bodies and queries built field by field from valid,
  boundary and invalid values; each answer must be the one the contract gives (201/200 carrying
  exactly what was sent, or 422 naming the field), so an accepted invalid input and a rejected
  valid one both fail.
(Random values are hypothesis's part here; the e2e suite also runs schemathesis's fuzzing phase.)
Both stay bounded (a minute and a half together); RESILIENCE_FUZZ_EXAMPLES scales them up.

The generators found three bugs, fixed since and pinned case by case at the end: U+0000 in text (a
500 on PostgreSQL), a trailing newline passing a pattern, a document laxer than the API.
"""

from __future__ import annotations

import os
import re
import secrets
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.auth.throttle import LoginThrottle
from tests.resilience.support import canvases_of, member
from tests.support.http import Client, Reply
from tests.support.schemathesis import CONFORMANCE, run_schemathesis
from tests.support.system import Stack
from tests.support.users import PASSWORD, User

pytestmark = [pytest.mark.e2e, pytest.mark.resilience]

SCALE = int(os.environ.get("RESILIENCE_FUZZ_EXAMPLES", "1"))
ENDS_SESSION = ["ApiAuthLogoutLogout", "ApiAuthSessionsSessionIdRevokeSession", "ApiUsersMeDeleteMe"]
# Every check schemathesis has, named one by one rather than `--checks all`: `all` also turns on
# `max_response_time` (10 s by default), a timer that fails the run on a loaded machine and says
# nothing about conformance; the CLI cannot exclude it. `positive_data_acceptance` is left out (above).
CHECKS = [
    *CONFORMANCE,
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
]


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# --- schemathesis -------------------------------------------------------------------------------


def schemathesis(base: str, token: str, *, only: list[str] | None = None, examples: int) -> None:
    client = f"198.51.100.{secrets.randbelow(250) + 1}"  # its failed logins lock a client of its own
    run_schemathesis(
        base,
        checks=CHECKS,
        phases=["coverage", "stateful"],
        examples=examples * SCALE,
        seed=7,
        workers=2,
        headers=[f"Authorization: Bearer {token}", f"X-Forwarded-For: {client}"],
        include=only or (),
        exclude=() if only else ENDS_SESSION,
        options=["--no-color", "--generation-database", "none"],
    )


@pytest.mark.slow
async def test_schemathesis_over_every_public_route(http: Client, stack: Stack, proxied_gateway: str) -> None:
    """No 5xx, no contradiction of the document, no schema-invalid input accepted, authentication
    never ignored, nothing usable after its deletion: the whole API, then the session-ending routes
    with a throwaway account."""
    user = await member(http, stack)
    await user.canvas(isPublic=True)
    await user.canvas()
    schemathesis(proxied_gateway, user.token, examples=15)
    throwaway = await member(http, stack)
    schemathesis(proxied_gateway, throwaway.token, only=ENDS_SESSION, examples=5)


# --- building blocks for the hypothesis oracle --------------------------------------------------

CHARS = st.characters(codec="utf-8")  # any code point JSON can carry, U+0000 included
TYPE_ALPHABET = string.ascii_lowercase + string.digits + "-"
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.text("ab", max_size=2), st.integers(0, 9), max_size=2),
)
FORBIDDEN = ["id", "userId", "views", "createdAt", "updatedAt"]
MIB = 1024 * 1024


@dataclass(frozen=True)
class Value:
    value: Any
    valid: bool


def judged(strategy: st.SearchStrategy[Any], rule: Callable[[Any], bool]) -> st.SearchStrategy[Value]:
    """Values from `strategy`, each marked valid or not by the contract's `rule` for the field."""
    return strategy.map(lambda v: Value(v, rule(v)))


def good(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Value]:
    return strategy.map(lambda v: Value(v, True))


def bad(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Value]:
    return strategy.map(lambda v: Value(v, False))


def exactly(n: int, chars: st.SearchStrategy[str] = CHARS) -> st.SearchStrategy[str]:
    """A string of exactly n characters (one character repeated: cheap, and multi-byte ones test
    that limits count characters, not bytes)."""
    return chars.map(lambda c: c * n)


def not_a(kind: type) -> st.SearchStrategy[Any]:
    return WRONG_TYPES.filter(lambda v: not isinstance(v, kind))


def text_rule(low: int, high: int, *, nul: bool = False) -> Callable[[Any], bool]:
    """docs/api.md: a string of low..high characters; U+0000 only where the text is never stored or
    looked up (passwords)."""
    return lambda v: isinstance(v, str) and low <= len(v) <= high and (nul or "\x00" not in v)


def text_field(low: int, high: int, *, nul: bool = False) -> st.SearchStrategy[Value]:
    """Strings of any length up to a little, both limits and just past them, a U+0000 inside, and
    values of other JSON types."""
    return judged(
        st.one_of(
            st.text(CHARS, max_size=min(high, 40)),
            exactly(high),
            exactly(high + 1),
            exactly(max(low, 1) - 1) if low else st.just(""),
            st.text(CHARS, min_size=max(low - 1, 0), max_size=max(low, 3)).map(lambda t: t + "\x00"),
            not_a(str),
        ),
        text_rule(low, high, nul=nul),
    )


def type_rule(v: Any) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[a-z0-9-]{1,32}", v) is not None


TYPE_FIELD = judged(
    st.one_of(
        st.text(TYPE_ALPHABET, min_size=1, max_size=32),
        exactly(32, st.sampled_from(TYPE_ALPHABET)),
        exactly(33, st.sampled_from(TYPE_ALPHABET)),
        st.just(""),
        st.tuples(st.text(TYPE_ALPHABET, max_size=8), CHARS, st.text(TYPE_ALPHABET, max_size=3)).map("".join),
        st.text(TYPE_ALPHABET, min_size=1, max_size=8).map(lambda t: t + "\n"),
        not_a(str),
    ),
    type_rule,
)
CODE_FIELD = judged(
    st.one_of(
        st.text(CHARS, max_size=40),
        st.sampled_from(["a" * MIB, "é" * (MIB // 2)]),  # exactly 1 MiB of UTF-8
        st.sampled_from(["a" * (MIB + 1), "é" * (MIB // 2) + "a"]),  # one byte over
        not_a(str),
    ),
    lambda v: isinstance(v, str) and len(v.encode()) <= MIB and "\x00" not in v,
)
TAG_RULE = text_rule(1, 32)
TAGS_FIELD = judged(
    st.one_of(
        st.lists(text_field(1, 32).map(lambda t: t.value), max_size=4),
        st.lists(st.text(CHARS, min_size=1, max_size=32), min_size=20, max_size=21),
        not_a(list),
    ),
    lambda v: isinstance(v, list) and len(v) <= 20 and all(TAG_RULE(t) for t in v),
)
BOOL_FIELD = st.one_of(good(st.booleans()), bad(st.sampled_from(["true", "false", 0, 1, None, []])))
CANVAS_FIELDS: dict[str, st.SearchStrategy[Value]] = {
    "title": text_field(1, 200),
    "type": TYPE_FIELD,
    "code": CODE_FIELD,
    "description": text_field(0, 2000),
    "tags": TAGS_FIELD,
    "isPublic": BOOL_FIELD,
}


@dataclass
class Body:
    json: dict[str, Any]
    problems: list[str]  # fields that make it invalid (empty: valid)


def _judged_as(draw: st.DrawFn, strategy: st.SearchStrategy[Value], valid: bool) -> Any:  # noqa: RET503
    """A value of `strategy` judged `valid` (drawn again until one is: `.filter` on these mostly-wrong
    strategies trips hypothesis's filter health check)."""
    for _ in range(50):
        value = draw(strategy)
        if value.valid == valid:
            return value.value
    reject()  # 50 draws without one of the kind asked for: not expected


@st.composite
def bodies(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Value]], required: set[str]) -> Body:
    """About half the bodies valid, the rest with exactly one thing wrong: a missing required field,
    one invalid value, or one field the contract does not have (so the 422 must name it)."""
    broken = draw(st.one_of(st.none(), st.sampled_from([*fields, "extra"])))
    body: dict[str, Any] = {}
    for name, strategy in fields.items():
        if name == broken:
            if name in required and draw(st.booleans()):
                continue  # missing
            body[name] = _judged_as(draw, strategy, valid=False)
        elif name in required or draw(st.integers(0, 4)):  # an optional field is left out 1 time in 5
            body[name] = _judged_as(draw, strategy, valid=True)
    if broken == "extra":
        unknown = st.text(string.ascii_letters, min_size=1, max_size=8).filter(lambda key: key not in fields)
        broken = draw(st.one_of(st.sampled_from(FORBIDDEN), unknown))
        body[broken] = draw(st.one_of(st.integers(0, 9), st.text(max_size=3)))
    return Body(body, [] if broken is None else [broken])


async def send(user: User, method: str, path: str, body: dict[str, Any]) -> Reply:
    """JSON encoded as UTF-8 (aiohttp's json= would escape every non-ASCII character six-fold)."""
    headers = {"Content-Type": "application/json"}
    return await user.call(method, path, data=msgspec.json.encode(body), headers=headers)


def assert_rejected(reply: Reply, problems: list[str]) -> None:
    assert reply.status == 422, (problems, reply.status, reply.body[:300])
    assert reply.headers["Content-Type"] == "application/problem+json"
    if len(problems) == 1:
        assert problems[0] in reply.json()["detail"], (problems, reply.body[:300])


def expected_canvas(body: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **body}
    merged["tags"] = list(dict.fromkeys(merged["tags"]))
    return merged


CANVAS_DEFAULTS = {"description": "", "tags": [], "isPublic": False}


@pytest.fixture(scope="module")
async def author(http: Client, stack: Stack) -> User:
    return await member(http, stack)


@dataclass
class Tally:
    """The canvases one hypothesis test's examples have made so far (they run one after another)."""

    user: User
    stack: Stack
    made: int = 0


@pytest.fixture(scope="module")
async def creator(http: Client, stack: Stack) -> Tally:
    return Tally(await member(http, stack), stack)


@pytest.fixture(scope="module")
async def patched(http: Client, stack: Stack) -> tuple[User, str]:
    user = await member(http, stack)
    return user, f"/api/canvases/{(await user.canvas())['id']}"


@fuzz_settings(120)
@given(body=bodies(CANVAS_FIELDS, required={"title", "type", "code"}))
async def test_canvas_creation_follows_the_contract(creator: Tally, body: Body) -> None:
    reply = await send(creator.user, "POST", "/api/canvases", body.json)
    if body.problems:
        assert_rejected(reply, body.problems)
        assert await canvases_of(creator.stack, creator.user.id) == creator.made  # nothing rejected stored
        return
    assert reply.status == 201, (body.json, reply.body[:300])
    creator.made += 1
    got = reply.json()
    want = expected_canvas(body.json, CANVAS_DEFAULTS)
    assert {k: got[k] for k in want} == want
    assert (got["userId"], got["views"]) == (creator.user.id, 0)


CANVAS_KEYS = ["title", "type", "code", "description", "tags", "isPublic"]


@fuzz_settings(80)
@given(body=bodies(CANVAS_FIELDS, required=set()))
async def test_canvas_changes_follow_the_contract(patched: tuple[User, str], body: Body) -> None:
    user, path = patched
    before = (await user.call("GET", path)).json()
    reply = await send(user, "PATCH", path, body.json)
    after = (await user.call("GET", path)).json()
    if body.problems:
        assert_rejected(reply, body.problems)
        assert {k: after[k] for k in CANVAS_KEYS} == {k: before[k] for k in CANVAS_KEYS}
        return
    assert reply.status == 200, (body.json, reply.body[:300])
    want = expected_canvas(body.json, {k: before[k] for k in CANVAS_KEYS})
    assert {k: reply.json()[k] for k in CANVAS_KEYS} == want
    assert {k: after[k] for k in CANVAS_KEYS} == want


LOCAL_PART = string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-"
LABEL = st.text(string.ascii_letters + string.digits, min_size=1, max_size=10)
VALID_EMAIL = st.builds(
    lambda local, labels, unique: f"{local}.{unique.hex[:12]}@{'.'.join(labels)}",
    st.text(LOCAL_PART, min_size=1, max_size=20),
    st.lists(LABEL, min_size=1, max_size=3),
    st.uuids(),
)
INVALID_EMAILS = [
    "",
    "plain",
    "a@",
    "@example.com",
    "a b@example.com",
    "a@exa mple.com",
    "a@-example.com",
    "a@example-.com",
    "a@example..com",
    "a@@example.com",
    "a@example.com.",
    "(a)@example.com",
    "a@example.com\n",
    "a\x00b@example.com",
    "a@" + "x" * 64 + ".com",
    "a" * 64 + "@" + ".".join(["b" * 63] * 4),  # matches the pattern, 320 characters long
]
SIGNUP_FIELDS = {
    "email": st.one_of(good(VALID_EMAIL), bad(st.sampled_from(INVALID_EMAILS)), bad(not_a(str))),
    "password": text_field(8, 256, nul=True),  # kept exactly as typed, U+0000 included
    "name": text_field(0, 100),
}


JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def emails_taken() -> set[str]:
    return set()


@fuzz_settings(40)
@given(body=bodies(SIGNUP_FIELDS, required={"email", "password"}))
async def test_signup_follows_the_contract(
    http: Client, stack: Stack, emails_taken: set[str], body: Body
) -> None:
    reply = await http(
        "POST", f"{stack.url}/api/auth/signup", data=msgspec.json.encode(body.json), headers=JSON
    )
    if body.problems:
        assert_rejected(reply, body.problems)
        return
    email = body.json["email"].lower()
    if email in emails_taken:
        assert reply.status == 409
        return
    assert reply.status == 201, (body.json, reply.body[:300])
    emails_taken.add(email)
    stack.tokens.append(reply.json()["token"])
    user = reply.json()["user"]
    assert (user["email"], user["name"]) == (email, body.json.get("name"))


ACCOUNT_LIMIT = 10  # docs/api.md: after 10 failures on an account every login for it is 429
LOGIN_FIELDS = {"email": text_field(0, 254), "password": text_field(0, 256, nul=True)}


@fuzz_settings(30)
@given(body=bodies(LOGIN_FIELDS, required={"email", "password"}))
async def test_login_follows_the_contract(
    http: Client, proxied_gateway: str, stack: Stack, body: Body
) -> None:
    """Through the gateway that believes X-Forwarded-For, each attempt from a client of its own, so
    the failures lock no one but the (random) accounts tried: 429 exactly when the account's failure
    count (kept by this suite's other tests too, e.g. for the empty email) has reached the limit."""
    client = {"X-Forwarded-For": f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}", **JSON}
    failures = 0
    if not body.problems:
        key = LoginThrottle._keys(body.json["email"].lower(), "")[0]
        async with Redis.from_url(stack.redis.url) as redis:
            failures = int(await redis.get(key) or 0)
    reply = await http(
        "POST", f"{proxied_gateway}/api/auth/login", data=msgspec.json.encode(body.json), headers=client
    )
    if body.problems:
        assert_rejected(reply, body.problems)
        return
    if failures >= ACCOUNT_LIMIT:
        assert reply.status == 429
        return
    assert reply.status == 401, (body.json, failures, reply.body[:300])
    assert reply.json()["detail"] == "Invalid email or password"


@st.composite
def listing_queries(draw: st.DrawFn, owner: str) -> tuple[dict[str, str], str]:
    """Query parameters for GET /api/canvases, and the expected outcome: ok, invalid or cursor."""
    params: dict[str, str] = {}
    outcome = set()
    options: dict[str, st.SearchStrategy[Value]] = {
        "limit": st.one_of(
            good(st.integers(1, 100).map(str)),
            bad(st.sampled_from(["0", "101", "-1", "x", "1.5", "", "99999999999999999999"])),
        ),
        "type": TYPE_FIELD.filter(lambda v: isinstance(v.value, str)),
        "tag": text_field(1, 32).filter(lambda v: isinstance(v.value, str)),
        "userId": st.one_of(
            good(st.sampled_from([owner, str(uuid.uuid4())])),
            bad(st.sampled_from(["nope", "123", "", owner + "0"])),
        ),
        "cursor": bad(st.text(string.ascii_letters + string.digits + "-_.", max_size=40)),
        # any text is a search: words, separators, either engine's query syntax, U+0000
        "q": st.one_of(
            good(st.text(min_size=1, max_size=200)),
            good(st.sampled_from(['"', "'", "a:*", "NEAR(a b)", "x & !y | (", "\\", "\x00", "a*"])),
            bad(st.sampled_from(["", "q" * 201])),
        ),
    }
    for name, strategy in options.items():
        if draw(st.booleans()):
            continue
        value = draw(strategy)
        params[name] = value.value
        if not value.valid:
            outcome.add("cursor" if name == "cursor" else "invalid")
    return params, ",".join(sorted(outcome)) or "ok"


@pytest.fixture(scope="module")
async def lister(http: Client, stack: Stack) -> User:
    user = await member(http, stack)
    for i in range(3):
        await user.canvas(type=f"kind{i}", tags=["hostile", f"t{i}"], isPublic=True)
    return user


@fuzz_settings(100)
@given(data=st.data())
async def test_listing_queries_follow_the_contract(
    http: Client, stack: Stack, lister: User, data: Any
) -> None:
    params, outcome = data.draw(listing_queries(lister.id))
    reply = await http("GET", f"{stack.url}/api/canvases", params=params)
    expected = {"ok": {200}, "invalid": {422}, "cursor": {400}, "cursor,invalid": {400, 422}}[outcome]
    assert reply.status in expected, (params, reply.status, reply.body[:300])
    if reply.status != 200:
        assert reply.headers["Content-Type"] == "application/problem+json"
        return
    items = reply.json()["items"]
    assert len(items) <= int(params.get("limit", "20"))
    for item in items:
        assert item["isPublic"] is True
        assert "code" not in item
        assert item["type"] == params.get("type", item["type"])
        assert item["userId"] == params.get("userId", item["userId"])
        if "tag" in params:
            assert params["tag"] in item["tags"]


# --- Regressions: what the generators above found (fixed since), pinned case by case ---------


async def test_a_nul_character_is_refused_in_every_stored_or_queried_text(
    http: Client, stack: Stack, author: User, proxied_gateway: str
) -> None:
    """U+0000 cannot be stored in PostgreSQL text (it was a 500 there): on both engines every text
    that is stored or looked up refuses it with 422 naming the field; a password, only ever hashed,
    keeps it."""
    canvas = await author.canvas()
    tries = [
        *(
            ("POST", "/api/canvases", {"title": "t", "type": "t", "code": "", f: "a\x00"}, f)
            for f in ("title", "code", "description")
        ),
        ("POST", "/api/canvases", {"title": "t", "type": "t", "code": "", "tags": ["a\x00"]}, "tags"),
        ("PATCH", f"/api/canvases/{canvas['id']}", {"title": "\x00"}, "title"),
        ("PATCH", "/api/users/me", {"name": "a\x00b"}, "name"),
    ]
    for method, path, body, field in tries:
        reply = await send(author, method, path, body)
        assert reply.status == 422, (method, path, reply.body)
        assert field in reply.json()["detail"]
    for query, field in (("tag=a%00b", "tag"), ("type=a%00b", "type")):
        reply = await author.call("GET", f"/api/canvases?{query}")
        assert reply.status == 422, (query, reply.body)
        assert field in reply.json()["detail"]
    signup = {"email": f"nul-{secrets.token_hex(4)}@example.com", "password": "pass\x00word", "name": "\x00"}
    assert (await http("POST", f"{stack.url}/api/auth/signup", json=signup)).status == 422
    del signup["name"]
    made = await http("POST", f"{stack.url}/api/auth/signup", json=signup)
    assert made.status == 201
    stack.tokens.append(made.json()["token"])
    login = {"email": "a\x00@example.com", "password": PASSWORD}
    client = {"X-Forwarded-For": "198.18.0.1"}
    assert (await http("POST", f"{proxied_gateway}/api/auth/login", json=login, headers=client)).status == 422
    again = await http("POST", f"{proxied_gateway}/api/auth/login", json=signup, headers=client)
    assert again.status == 200  # the password with its U+0000, exactly as typed
    stack.tokens.append(again.json()["token"])


async def test_a_trailing_newline_does_not_pass_a_pattern(http: Client, stack: Stack, author: User) -> None:
    """msgspec applies patterns with re.search, where `$` also matches before a final newline:
    "p5\\n" was a valid canvas type and "x@example.com\\n" a valid email. Both are 422 now."""
    canvas = await author.canvas()
    created = await send(author, "POST", "/api/canvases", {"title": "t", "type": "p5\n", "code": ""})
    changed = await send(author, "PATCH", f"/api/canvases/{canvas['id']}", {"type": "p5\n"})
    filtered = await author.call("GET", "/api/canvases?type=p5%0A")
    email = f"newline-{secrets.token_hex(4)}@example.com\n"
    signup = await http("POST", f"{stack.url}/api/auth/signup", json={"email": email, "password": PASSWORD})
    body = {"email": f"changed-{secrets.token_hex(4)}@example.com\n", "currentPassword": PASSWORD}
    moved = await author.call("PATCH", "/api/users/me", json=body)
    assert [r.status for r in (created, changed, filtered, signup, moved)] == [422] * 5


async def test_the_document_declares_what_the_api_enforces(http: Client, stack: Stack) -> None:
    """The document was laxer than the API (schemathesis: schema-valid requests rejected): request
    bodies now say additionalProperties: false, and `tags` items their 1..32 characters."""
    doc = (await http("GET", f"{stack.url}/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    bodies_seen = []
    for item in doc["paths"].values():
        for op in item.values():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in ref:
                bodies_seen.append(ref["$ref"].rsplit("/", 1)[1])
    assert len(bodies_seen) >= 7
    lax = [name for name in bodies_seen if schemas[name].get("additionalProperties") is not False]
    tags = [schemas[n]["properties"]["tags"] for n in ("CanvasCreate", "CanvasUpdate")]
    tag_items = [t["items"] if "items" in t else t["oneOf"][0]["items"] for t in tags]
    assert lax == []
    assert all((i.get("minLength"), i.get("maxLength")) == (1, 32) for i in tag_items)
