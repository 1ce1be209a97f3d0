"""Security (issue 7, OWASP ASVS): session tokens, enumeration, throttling, revocation, access
control, mass assignment, internal credentials, identity headers and CSRF, through the real processes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import Process
from devtools.redis_server import free_port
from gateway.routes import ENDPOINTS, Access, Endpoint
from services.auth.sessions import new_token
from shared import internal_auth
from tests.resilience.support import Traffic, bounded, current_session, log_in, member
from tests.support.http import ALLOWED_ORIGIN, Client, Reply, bearer, cookie
from tests.support.processes import web_process
from tests.support.system import CLIENT_LIMIT, Stack
from tests.support.users import PASSWORD, User, new_email

pytestmark = [pytest.mark.e2e, pytest.mark.resilience]

TOKEN = re.compile(r"[a-z2-7]{32}")
SECRET = os.environ["INTERNAL_SECRET"].encode()
EVIL = "http://evil.example"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def second_session(http: Client, stack: Stack, user: User) -> User:
    """The same account logged in again: another token, another session."""
    reply = await log_in(http, stack, user.email)
    assert reply.status == 200
    return User(http, stack.url, user.email, reply.json()["token"], reply.json())


# --- Tokens -------------------------------------------------------------------------------------


def test_ten_thousand_tokens_are_unique_160_bit_and_unbiased() -> None:
    """The generator the auth service issues sessions with: 10,000 tokens, all distinct, each 32
    lowercase base32 characters carrying 20 bytes, and every one of the 160 bits set in about half
    of them (a stuck or biased bit would be far outside 50 % +- 10 standard deviations)."""
    tokens = [new_token() for _ in range(10_000)]
    assert len(set(tokens)) == 10_000
    assert all(TOKEN.fullmatch(t) for t in tokens)
    raw = [base64.b32decode(t.upper()) for t in tokens]
    assert {len(r) for r in raw} == {20}
    ones = [0] * 160
    for value in raw:
        number = int.from_bytes(value, "big")
        for bit in range(160):
            ones[bit] += (number >> bit) & 1
    assert all(4500 <= n <= 5500 for n in ones), ones


async def stored_text(stack: Stack) -> str:
    """Everything the auth database holds, as text (on SQLite the raw files, WAL included)."""
    if stack.auth_db.sqlite:
        path = Path(stack.auth_db.url.removeprefix("sqlite:///"))
        files = [p for p in (path, Path(f"{path}-wal")) if p.exists()]
        return "".join(p.read_bytes().decode("latin-1") for p in files)
    tables = ["users", "sessions", "outbox"]
    rows = [await stack.auth_db.fetch(f"SELECT CAST(t AS TEXT) AS row FROM {table} t") for table in tables]
    return "\n".join(r["row"] for found in rows for r in found)


async def test_issued_tokens_are_stored_only_as_their_sha256(http: Client, stack: Stack) -> None:
    """Every token the running service issued (this suite's ledger) has the Lucia shape and is
    unique; a live session's stored id is the SHA-256 of its token, and no token appears anywhere in
    the auth database."""
    user = await member(http, stack)
    again = await second_session(http, stack, user)
    issued = stack.tokens
    assert len(set(issued)) == len(issued)
    assert all(TOKEN.fullmatch(t) for t in issued)
    rows = await stack.auth_db.fetch(
        "SELECT id FROM sessions WHERE CAST(user_id AS VARCHAR(36)) = ?", user.id
    )
    assert {r["id"] for r in rows} == {sha256(user.token), sha256(again.token)}
    stored = await stored_text(stack)
    assert sha256(user.token) in stored  # the scan sees the sessions
    leaked = [t for t in issued if t in stored]
    assert leaked == []


@pytest.fixture
def debug_pair(stack: Stack) -> Iterator[str]:
    """An auth service and a gateway logging at DEBUG (same databases and Redis as the stack)."""
    auth_port, gateway_port = free_port(), free_port()
    auth_url = f"http://127.0.0.1:{auth_port}"
    env = {**stack.env, "LOG_LEVEL": "DEBUG", "GATEWAY_AUTH_URL": auth_url}
    started: list[Process] = []
    try:
        started.append(
            web_process("auth-debug", "services.auth.app:app", env, stack.logs, port=auth_port).start()
        )
        started.append(
            web_process("gateway-debug", "gateway.app:app", env, stack.logs, port=gateway_port).start()
        )
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        for process in reversed(started):
            process.stop()


async def test_tokens_never_reach_any_log(http: Client, stack: Stack, debug_pair: str) -> None:
    """Every token issued in this run, through every way of presenting it (Bearer, cookie, inside a
    malformed header, revoked, after a failed login), is absent from every process log of the stack,
    including an auth service and a gateway logging at DEBUG; so is the password."""
    marker = f"res-logcheck-{secrets.token_hex(4)}"
    signup = await http(
        "POST",
        f"{debug_pair}/api/auth/signup",
        json={"email": new_email(), "password": PASSWORD},
        headers={"X-Request-Id": marker},
    )
    assert signup.status == 201
    token, email = signup.json()["token"], signup.json()["user"]["email"]
    stack.tokens.append(token)
    second = await log_in(http, stack, email, base=debug_pair)
    assert second.status == 200
    other = second.json()["token"]
    me = f"{debug_pair}/api/users/me"
    assert (await http("GET", me, headers=bearer(token))).status == 200
    assert (await http("GET", me, headers=cookie(other))).status == 200
    assert (await http("GET", me, headers=bearer(token + "x"))).status == 401  # malformed, token inside
    assert (await http("GET", me, headers=cookie(other + "!"))).status == 401
    assert (await http("GET", me, headers={"Authorization": f"Basic {token}"})).status == 401
    assert (await log_in(http, stack, email, "wrong password!", base=debug_pair)).status == 401
    logout = await http(
        "POST", f"{debug_pair}/api/auth/logout", headers={**cookie(other), "Origin": ALLOWED_ORIGIN}
    )
    assert logout.status == 204
    assert (await http("GET", me, headers=cookie(other))).status == 401

    logs = {p.name: p.read_text(errors="replace") for p in stack.logs.glob("*.log")}
    assert any(
        marker in text for name, text in logs.items() if name.startswith("auth-debug-")
    )  # the capture holds the requests' lines
    for name, text in logs.items():
        assert [t for t in stack.tokens if t in text] == [], name
        assert PASSWORD not in text, name
        assert "wrong password!" not in text, name


# --- Enumeration and throttling -----------------------------------------------------------------

_VARYING = {"date", "x-request-id", "ratelimit-remaining", "ratelimit-reset", "content-length"}


def fingerprint(reply: Reply) -> tuple[int, bytes, dict[str, str]]:
    headers = {k.lower(): v for k, v in reply.headers.items() if k.lower() not in _VARYING}
    return reply.status, reply.body, headers


async def test_unknown_email_and_wrong_password_are_indistinguishable(http: Client, stack: Stack) -> None:
    """A wrong password for an existing account and any password for an unknown email give the same
    status, the same body byte for byte and the same headers (the request id and date aside)."""
    user = await member(http, stack)
    wrong = await log_in(http, stack, user.email, "not the password")
    unknown = await log_in(http, stack, new_email(), "not the password")
    shouted = await log_in(http, stack, user.email.upper(), "not the password")
    assert wrong.status == 401
    assert fingerprint(wrong) == fingerprint(unknown) == fingerprint(shouted)
    assert "set-cookie" not in fingerprint(wrong)[2]


def forwarded_headers() -> dict[str, str]:
    """Every header a client might use to claim another address, with a fresh random one."""
    ip = f"203.0.113.{secrets.randbelow(250) + 1}"
    return {"X-Forwarded-For": ip, "X-Real-Ip": ip, "Forwarded": f"for={ip}"}


@pytest.mark.parametrize("behind_proxy", [False, True], ids=["direct", "behind-trusted-proxy"])
async def test_rotating_forwarded_for_does_not_escape_the_account_limit(
    http: Client, stack: Stack, proxied_gateway: str, behind_proxy: bool
) -> None:
    """Ten failed logins on one account, each claiming another client address: the right password
    is then refused with 429 and Retry-After, whether the gateway ignores X-Forwarded-For (direct) or
    believes it (behind a trusted proxy, where each attempt really counts as another client)."""
    base = proxied_gateway if behind_proxy else stack.url
    user = await member(http, stack)
    for _ in range(10):
        failed = await log_in(
            http, stack, user.email, "wrong password!", base=base, headers=forwarded_headers()
        )
        assert failed.status == 401
    locked = await log_in(http, stack, user.email, base=base, headers=forwarded_headers())
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) >= 1


async def test_rotating_the_client_part_of_forwarded_for_does_not_escape_the_client_limit(
    http: Client, stack: Stack, proxied_gateway: str
) -> None:
    """Behind a trusted proxy the client is the address the proxy appended; the hops a client puts
    in front of it are its own invention. Failing on many accounts from one client while inventing a
    new first hop each time still locks that client (429), and only that client."""
    client = f"198.51.100.{secrets.randbelow(250) + 1}"
    user = await member(http, stack)

    async def fail_once() -> int:
        hops = {"X-Forwarded-For": f"{secrets.randbelow(256)}.{secrets.randbelow(256)}.1.1, {client}"}
        return (
            await log_in(http, stack, new_email(), "wrong password!", base=proxied_gateway, headers=hops)
        ).status

    assert set(await bounded(fail_once() for _ in range(CLIENT_LIMIT))) == {401}
    spoofed_first_hop = {"X-Forwarded-For": f"10.9.8.7, {client}"}
    locked = await log_in(http, stack, user.email, base=proxied_gateway, headers=spoofed_first_hop)
    assert locked.status == 429
    assert int(locked.headers["Retry-After"]) >= 1
    elsewhere = {"X-Forwarded-For": "192.0.2.10"}
    assert (await log_in(http, stack, user.email, base=proxied_gateway, headers=elsewhere)).status == 200


# --- Revocation ---------------------------------------------------------------------------------


async def revoke(kind: str, actor: User, victim: User) -> None:
    if kind == "logout":
        reply = await victim.call("POST", "/api/auth/logout")
    elif kind == "revoke":
        reply = await actor.call("DELETE", f"/api/auth/sessions/{await current_session(victim)}")
    elif kind == "revoke-others":
        reply = await actor.call("DELETE", "/api/auth/sessions")
    elif kind == "password-change":
        body = {"currentPassword": PASSWORD, "newPassword": "a brand new password"}
        reply = await actor.call("POST", "/api/users/me/password", json=body)
    else:
        reply = await actor.call("DELETE", "/api/users/me", json={"password": PASSWORD})
    assert reply.status == 204, reply.body


@pytest.mark.parametrize("kind", ["logout", "revoke", "revoke-others", "password-change", "account-deletion"])
async def test_a_revoked_token_fails_at_the_very_next_request(http: Client, stack: Stack, kind: str) -> None:
    """A victim token in the gateway's cache and in constant use, on an auth route and a canvas
    route, while it is revoked: every request sent after the revocation answered is 401."""
    actor = await member(http, stack)
    victim = await second_session(http, stack, actor)
    state = "valid"
    traffic = Traffic(
        [
            (lambda: state, lambda: victim.call("GET", "/api/users/me")),
            (lambda: state, lambda: victim.call("GET", "/api/users/me/canvases")),
        ]
    )
    traffic.start(workers=3)
    try:
        await traffic.answered("before", 20)
        state = "racing"
        await revoke(kind, actor, victim)
        state = "revoked"
        traffic.phase = "after"
        await traffic.answered("after", 30)
    finally:
        await traffic.stop()
    assert set(traffic.statuses("valid")) == {200}
    assert set(traffic.statuses("revoked")) == {401}
    # The account's other session survives everything but the account's deletion.
    assert (await actor.call("GET", "/api/users/me")).status == (401 if kind == "account-deletion" else 200)


# --- Access control -----------------------------------------------------------------------------
# The access-control matrix over every public route, one case a row: a stranger and an anonymous
# caller can neither see nor change the owner's private canvas (404, exactly as for a canvas that does
# not exist), can read but not change the public one (403), never see the private canvas in any
# listing, never move its view count, and session routes only ever act on the caller's own account.
# `test_the_matrix_names_every_route` keeps the matrix naming every route the gateway serves.


@dataclass
class Owner:
    """The account whose canvases the matrix attacks (made once for this module)."""

    user: User
    session_id: str
    kind: str  # the canvases' type, unique to this run
    private: dict[str, Any]
    public: dict[str, Any]

    async def views_of_private(self) -> int:
        """The private canvas's views as its owner reads them (the read counts one)."""
        return int((await self.user.call("GET", canvas_path(self.private))).json()["views"])


def canvas_path(canvas: dict[str, Any]) -> str:
    return f"/api/canvases/{canvas['id']}"


@pytest.fixture(scope="module")
async def owner(http: Client, stack: Stack) -> Owner:
    user = await member(http, stack)
    kind = f"acl{secrets.token_hex(4)}"
    private = await user.canvas(type=kind, tags=["secret"])
    public = await user.canvas(type=kind, tags=["secret"], isPublic=True)
    return Owner(user, await current_session(user), kind, private, public)


@pytest.fixture(scope="module")
async def onlooker(http: Client, stack: Stack) -> User:
    """A stranger for the cases that change nothing of their own account."""
    return await member(http, stack)


Caller = Callable[..., Awaitable[Reply]]


@pytest.fixture(scope="module")
def callers(http: Client, stack: Stack, onlooker: User) -> dict[str, Caller]:
    """The two who are not the owner: a signed-in stranger and an anonymous caller."""

    async def anonymous(method: str, path: str, **kwargs: Any) -> Reply:
        return await http(method, stack.url + path, **kwargs)

    return {"stranger": onlooker.call, "anonymous": anonymous}


SESSION_ROUTES = [ep for ep in ENDPOINTS if ep.access is Access.SESSION]


@pytest.mark.parametrize("ep", SESSION_ROUTES, ids=[f"{ep.method} {ep.template}" for ep in SESSION_ROUTES])
async def test_anonymous_calls_to_session_routes_are_401(
    http: Client, stack: Stack, owner: Owner, ep: Endpoint
) -> None:
    path = ep.template.replace("{id}", owner.session_id if "sessions" in ep.template else owner.private["id"])
    reply = await http(ep.method, stack.url + path, json={})
    assert reply.status == 401, reply.body
    assert reply.headers["WWW-Authenticate"] == "Bearer"


BY_ID = [(who, method) for who in ("stranger", "anonymous") for method in ("GET", "HEAD", "PATCH", "DELETE")]


@pytest.mark.parametrize(("who", "method"), BY_ID, ids=[f"{who} {method}" for who, method in BY_ID])
async def test_a_private_canvas_is_as_absent_to_others_as_one_that_never_existed(
    owner: Owner, callers: dict[str, Caller], who: str, method: str
) -> None:
    call = callers[who]
    body = {"json": {"title": "x"}} if method == "PATCH" else {}
    views = await owner.views_of_private()
    hidden = await call(method, canvas_path(owner.private), **body)
    absent = await call(method, f"/api/canvases/{uuid.uuid4()}", **body)
    expected = 401 if who == "anonymous" and method in ("PATCH", "DELETE") else 404
    assert hidden.status == absent.status == expected, hidden.body
    assert hidden.body == absent.body
    assert await owner.views_of_private() == views + 1  # only the owner's own read counted


PUBLIC = [
    ("stranger", "GET", 200),
    ("anonymous", "HEAD", 200),
    ("stranger", "PATCH", 403),
    ("stranger", "DELETE", 403),
]


@pytest.mark.parametrize(("who", "method", "status"), PUBLIC, ids=[f"{w} {m}" for w, m, _ in PUBLIC])
async def test_a_public_canvas_is_readable_but_not_changeable_by_others(
    owner: Owner, callers: dict[str, Caller], who: str, method: str, status: int
) -> None:
    call = callers[who]
    body = {"json": {"title": "mine now"}} if method == "PATCH" else {}
    assert (await call(method, canvas_path(owner.public), **body)).status == status
    seen = await owner.user.call("GET", canvas_path(owner.public))
    assert (seen.status, seen.json()["title"]) == (200, owner.public["title"])


def listings(owner: Owner) -> list[str]:
    return [
        "/api/canvases",
        f"/api/canvases?type={owner.kind}",
        "/api/canvases?tag=secret&limit=100",
        f"/api/canvases?userId={owner.user.id}",
        f"/api/canvases?userId={owner.user.id}&type={owner.kind}&tag=secret",
    ]


LISTED = [(who, query) for who in ("stranger", "anonymous") for query in range(5)]


@pytest.mark.parametrize(("who", "query"), LISTED, ids=[f"{w} query{q}" for w, q in LISTED])
async def test_a_private_canvas_is_in_no_listing(
    owner: Owner, callers: dict[str, Caller], who: str, query: int
) -> None:
    reply = await callers[who]("GET", listings(owner)[query])
    assert reply.status == 200
    assert owner.private["id"] not in reply.body.decode()


async def test_the_filtered_listing_shows_exactly_the_public_canvas(
    http: Client, stack: Stack, owner: Owner
) -> None:
    reply = await http("GET", stack.url + listings(owner)[4])
    assert [c["id"] for c in reply.json()["items"]] == [owner.public["id"]]


async def test_a_canvas_made_private_is_gone_for_others_at_once(
    http: Client, stack: Stack, owner: Owner
) -> None:
    canvas = await owner.user.canvas(type=owner.kind, isPublic=True)
    assert (await owner.user.call("PATCH", canvas_path(canvas), json={"isPublic": False})).status == 200
    assert (await http("GET", stack.url + canvas_path(canvas))).status == 404
    listed = await http("GET", f"{stack.url}/api/canvases?userId={owner.user.id}")
    assert canvas["id"] not in listed.body.decode()


@dataclass
class Scene:
    """What an account-route case acts in: a fresh stranger of its own, and the owner."""

    http: Client
    stack: Stack
    owner: Owner
    stranger: User

    async def anonymous(self, method: str, path: str, **kwargs: Any) -> Reply:
        return await self.http(method, self.stack.url + path, **kwargs)


async def _my_canvases(s: Scene) -> None:
    mine = (await s.stranger.call("GET", "/api/users/me/canvases?limit=100")).json()["items"]
    assert s.owner.user.id not in {c["userId"] for c in mine}


async def _create(s: Scene) -> None:
    created = await s.stranger.call("POST", "/api/canvases", json={"title": "t", "type": "t", "code": ""})
    assert created.json()["userId"] == s.stranger.id


async def _me(s: Scene) -> None:
    assert (await s.stranger.call("GET", "/api/users/me")).json()["id"] == s.stranger.id


async def _update_me(s: Scene) -> None:
    reply = await s.stranger.call("PATCH", "/api/users/me", json={"name": "Mallory"})
    assert reply.json()["id"] == s.stranger.id
    assert (await s.owner.user.call("GET", "/api/users/me")).json()["name"] != "Mallory"


async def _sessions(s: Scene) -> None:
    listed = (await s.stranger.call("GET", "/api/auth/sessions")).json()["items"]
    assert s.owner.session_id not in {item["id"] for item in listed}


async def _revoke_owners_session(s: Scene) -> None:
    assert (await s.stranger.call("DELETE", f"/api/auth/sessions/{s.owner.session_id}")).status == 404


async def _revoke_others(s: Scene) -> None:
    assert (await s.stranger.call("DELETE", "/api/auth/sessions")).status == 204


async def _logout(s: Scene) -> None:
    assert (
        await (await second_session(s.http, s.stack, s.stranger)).call("POST", "/api/auth/logout")
    ).status == 204


async def _change_password(s: Scene) -> None:
    body = {"currentPassword": PASSWORD, "newPassword": PASSWORD + "!"}
    assert (await s.stranger.call("POST", "/api/users/me/password", json=body)).status == 204


async def _signup_as_owner(s: Scene) -> None:
    body = {"email": s.owner.user.email, "password": "whatever1"}
    assert (await s.anonymous("POST", "/api/auth/signup", json=body)).status == 409


async def _login_as_owner(s: Scene) -> None:
    assert (await log_in(s.http, s.stack, s.owner.user.email, "not the password")).status == 401


async def _resend_verification(s: Scene) -> None:
    assert (await s.stranger.call("POST", "/api/users/me/email-verification")).status == 202


async def _reset_owners_password(s: Scene) -> None:
    reply = await s.anonymous("POST", "/api/auth/password-reset", json={"email": s.owner.user.email})
    assert reply.status == 202


async def _confirm_a_guessed_reset(s: Scene) -> None:
    guess = {"token": "a" * 32, "newPassword": "attacker's choice"}
    assert (await s.anonymous("POST", "/api/auth/password-reset/confirm", json=guess)).status == 400


async def _confirm_a_guessed_verification(s: Scene) -> None:
    guess = {"token": "a" * 32}
    assert (await s.anonymous("POST", "/api/auth/email-verification/confirm", json=guess)).status == 400


async def _delete_me(s: Scene) -> None:
    reply = await s.stranger.call("DELETE", "/api/users/me", json={"password": PASSWORD})
    assert reply.status == 204


# Session and account routes act on the caller's own account only; recovery routes: anyone may ask,
# and nothing reaches the owner's account without its mail.
ACCOUNT = [
    ("GET", "/api/users/me/canvases", _my_canvases),
    ("POST", "/api/canvases", _create),
    ("GET", "/api/users/me", _me),
    ("PATCH", "/api/users/me", _update_me),
    ("GET", "/api/auth/sessions", _sessions),
    ("DELETE", "/api/auth/sessions/{id}", _revoke_owners_session),
    ("DELETE", "/api/auth/sessions", _revoke_others),
    ("POST", "/api/auth/logout", _logout),
    ("POST", "/api/users/me/password", _change_password),
    ("POST", "/api/auth/signup", _signup_as_owner),
    ("POST", "/api/auth/login", _login_as_owner),
    ("POST", "/api/users/me/email-verification", _resend_verification),
    ("POST", "/api/auth/password-reset", _reset_owners_password),
    ("POST", "/api/auth/password-reset/confirm", _confirm_a_guessed_reset),
    ("POST", "/api/auth/email-verification/confirm", _confirm_a_guessed_verification),
    ("DELETE", "/api/users/me", _delete_me),
]


@pytest.mark.parametrize("case", ACCOUNT, ids=[f"{m} {t}" for m, t, _ in ACCOUNT])
async def test_account_routes_act_on_the_callers_own_account_only(
    http: Client, stack: Stack, owner: Owner, case: tuple[str, str, Callable[[Scene], Awaitable[None]]]
) -> None:
    await case[2](Scene(http, stack, owner, await member(http, stack)))
    assert (await owner.user.call("GET", "/api/users/me")).status == 200  # the owner is untouched


def test_the_matrix_names_every_route() -> None:
    by_id = {(method, "/api/canvases/{id}") for _, method in BY_ID}
    named = by_id | {("GET", "/api/canvases")} | {(m, t) for m, t, _ in ACCOUNT}
    assert named == {(ep.method, ep.template) for ep in ENDPOINTS}


MASS_ASSIGNMENT = [
    ("POST", "/api/canvases", "id", str(uuid.uuid4())),
    ("POST", "/api/canvases", "userId", str(uuid.uuid4())),
    ("POST", "/api/canvases", "views", 1000),
    ("POST", "/api/canvases", "createdAt", "2020-01-01T00:00:00.000000Z"),
    ("PATCH", "/api/canvases/{id}", "userId", str(uuid.uuid4())),
    ("PATCH", "/api/canvases/{id}", "views", 1000),
    ("PATCH", "/api/canvases/{id}", "updatedAt", "2020-01-01T00:00:00.000000Z"),
    ("PATCH", "/api/canvases/{id}", "id", str(uuid.uuid4())),
    ("PATCH", "/api/users/me", "id", str(uuid.uuid4())),
    ("PATCH", "/api/users/me", "createdAt", "2020-01-01T00:00:00.000000Z"),
    ("PATCH", "/api/users/me", "passwordHash", "$argon2id$v=19$m=19456,t=2,p=1$x$y"),
    ("PATCH", "/api/users/me", "password", "a new password"),
    ("POST", "/api/auth/signup", "id", str(uuid.uuid4())),
]


@pytest.mark.parametrize("case", MASS_ASSIGNMENT, ids=[f"{m} {p} {f}" for m, p, f, _ in MASS_ASSIGNMENT])
async def test_mass_assignment_is_refused(
    http: Client, stack: Stack, case: tuple[str, str, str, Any]
) -> None:
    """A field a client may not set, next to valid ones: 422 naming it, and nothing changed."""
    method, path, field, value = case
    user = await member(http, stack)
    canvas = await user.canvas()
    bodies = {
        "/api/canvases": {"title": "t", "type": "t", "code": ""},
        "/api/canvases/{id}": {"title": "changed"},
        "/api/users/me": {"name": "changed"},
        "/api/auth/signup": {"email": new_email(), "password": PASSWORD},
    }
    body = {**bodies[path], field: value}
    reply = await user.call(method, path.replace("{id}", canvas["id"]), json=body)
    assert reply.status == 422, reply.body
    assert field in reply.json()["detail"]
    after = (await user.call("GET", f"/api/canvases/{canvas['id']}")).json()
    assert (after["title"], after["userId"], after["views"], after["createdAt"]) == (
        canvas["title"],
        user.id,
        1,
        canvas["createdAt"],
    )
    me = (await user.call("GET", "/api/users/me")).json()
    assert (me["id"], me["name"]) == (user.id, None)
    listed = (await user.call("GET", "/api/users/me/canvases")).json()["items"]
    assert [c["id"] for c in listed] == [canvas["id"]]
    if path == "/api/auth/signup":
        assert (await log_in(http, stack, body["email"])).status == 401  # no account was made


# --- Internal credential and identity headers ---------------------------------------------------


def direct_routes(stack: Stack) -> list[tuple[str, str]]:
    """Every route of the two services, called straight on their own ports."""
    base = {"auth": stack.auth_url, "canvas": stack.canvas_url}
    ids = {"/api/canvases/{id}": str(uuid.uuid4()), "/api/auth/sessions/{id}": "a" * 64}
    routes = [
        (ep.method, base[ep.upstream] + ep.template.replace("{id}", ids.get(ep.template, "")))
        for ep in ENDPOINTS
    ]
    routes += [
        ("POST", f"{stack.auth_url}/internal/sessions/validate"),
        ("POST", f"{stack.auth_url}/internal/users/existing"),
    ]
    return routes


async def test_services_refuse_calls_without_a_valid_credential(http: Client, stack: Stack) -> None:
    """Every route of the auth and canvas services, called directly: without the credential, with a
    malformed one, one signed with another secret, a valid one whose payload was swapped (naming
    another user), and one that expired: 401 with a Bearer challenge, as problem details."""
    owner, stranger = await member(http, stack), await member(http, stack)
    good = internal_auth.sign(SECRET, audience="canvas", user_id=stranger.id)
    forged = internal_auth.sign(SECRET, audience="canvas", user_id=owner.id)
    swapped = ".".join([good.split(".")[0], forged.split(".")[1], good.split(".")[2]])
    credentials = {
        "missing": None,
        "malformed": "v1.not-a-credential",
        "other-secret": internal_auth.sign(b"s" * 32, audience="canvas", user_id=owner.id),
        "swapped-payload": swapped,
        "expired": internal_auth.sign(
            SECRET, audience="canvas", user_id=owner.id, now=time.time() - internal_auth.DEFAULT_MAX_AGE - 5
        ),
    }
    for method, url in direct_routes(stack):
        for name, value in credentials.items():
            headers = {internal_auth.HEADER: value} if value else {}
            reply = await http(method, url, headers=headers, json={})
            assert reply.status == 401, (name, method, url, reply.body)
            assert reply.headers["WWW-Authenticate"] == "Bearer"
            if method != "HEAD":
                assert reply.headers["Content-Type"] == "application/problem+json"
    valid = {
        internal_auth.HEADER: internal_auth.sign(SECRET, audience="canvas", user_id=owner.id, session_id="s")
    }
    assert (await http("GET", f"{stack.canvas_url}/api/users/me/canvases", headers=valid)).status == 200


async def test_identity_headers_from_clients_are_ignored(http: Client, stack: Stack) -> None:
    """A client sending identity headers, even a correctly signed internal credential naming the
    victim (stolen from a log, say): the gateway drops them all, so an anonymous caller stays
    anonymous and a signed-in caller stays themselves."""
    victim, attacker = await member(http, stack), await member(http, stack)
    secret_canvas = await victim.canvas()
    spoof = {
        internal_auth.HEADER: internal_auth.sign(
            SECRET, audience="canvas", user_id=victim.id, session_id=sha256(victim.token)
        ),
        "X-User-Id": victim.id,
        "X-Session-Id": sha256(victim.token),
        "X-Forwarded-User": victim.email,
        "X-Real-Ip": "10.0.0.1",
        "Forwarded": "for=10.0.0.1",
    }
    path = f"/api/canvases/{secret_canvas['id']}"
    assert (await http("GET", f"{stack.url}/api/users/me", headers=spoof)).status == 401
    assert (await http("GET", stack.url + path, headers=spoof)).status == 404
    assert (await http("POST", f"{stack.url}/api/canvases", headers=spoof, json={})).status == 401
    assert (await attacker.call("GET", "/api/users/me", headers=spoof)).json()["id"] == attacker.id
    assert (await attacker.call("GET", path, headers=spoof)).status == 404
    assert (await attacker.call("DELETE", path, headers=spoof)).status == 404
    made = await attacker.call(
        "POST", "/api/canvases", headers=spoof, json={"title": "t", "type": "t", "code": ""}
    )
    assert made.json()["userId"] == attacker.id
    assert (await victim.call("GET", path)).json()["views"] == 1


# --- CSRF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin", [EVIL, "null", None, ALLOWED_ORIGIN + ".evil.example", "https://app.example"]
)
async def test_cookie_authenticated_writes_from_a_foreign_origin_are_403(
    http: Client, stack: Stack, origin: str | None
) -> None:
    """Every state-changing route, authenticated by the cookie, from a foreign (or missing, or
    `null`) Origin: 403, and nothing changed. With Bearer the same request passes (control)."""
    user = await member(http, stack)
    other = await second_session(http, stack, user)
    canvas = await user.canvas()
    headers = {**cookie(user.token), **({"Origin": origin} if origin else {})}
    ids = {"/api/canvases/{id}": canvas["id"], "/api/auth/sessions/{id}": await current_session(other)}
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/api/canvases"): {"title": "t", "type": "t", "code": ""},
        ("PATCH", "/api/canvases/{id}"): {"title": "defaced"},
        ("PATCH", "/api/users/me"): {"name": "defaced"},
        ("POST", "/api/users/me/password"): {"currentPassword": PASSWORD, "newPassword": "attacker's choice"},
        ("DELETE", "/api/users/me"): {"password": PASSWORD},
    }
    writes = [ep for ep in ENDPOINTS if ep.access is Access.SESSION and ep.method not in ("GET", "HEAD")]
    assert len(writes) == 10
    for ep in writes:
        path = ep.template.replace("{id}", ids.get(ep.template, ""))
        reply = await http(
            ep.method, stack.url + path, headers=headers, json=bodies.get((ep.method, ep.template))
        )
        assert reply.status == 403, (ep.method, path, reply.body)
    assert (await user.call("GET", f"/api/canvases/{canvas['id']}")).json()["title"] == canvas["title"]
    assert (await user.call("GET", "/api/users/me")).json()["name"] is None
    assert (await user.call("GET", "/api/users/me/canvases")).json()["items"][0]["id"] == canvas["id"]
    assert (await other.call("GET", "/api/users/me")).status == 200
    assert (await http("GET", f"{stack.url}/api/users/me", headers=cookie(user.token))).status == 200
    if origin is not None:
        signup = {"email": new_email(), "password": PASSWORD}
        assert (
            await http("POST", f"{stack.url}/api/auth/signup", json=signup, headers={"Origin": origin})
        ).status == 403
    bearer_write = await http(
        "PATCH",
        f"{stack.url}/api/users/me",
        headers={**bearer(user.token), "Origin": EVIL},
        json={"name": "ok"},
    )
    assert bearer_write.status == 200
