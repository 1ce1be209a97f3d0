"""Session validation through the Redis cache, cookies and CSRF, against the stub auth service."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import pytest
from redis.asyncio import Redis

from devtools.processes import Process
from devtools.redis_server import RedisServer
from shared.session_cache import cache_key
from tests.support.http import ALLOWED_ORIGIN, Client, bearer, cookie
from tests.support.processes import url_of
from tests.support.stubs import Stub

pytestmark = pytest.mark.e2e


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {"name": name, "value": value}
    for part in parts[1:]:
        key, _, val = part.partition("=")
        attrs[key.lower()] = val
    return attrs


async def test_signup_and_login_set_the_session_cookie(http: Client, gateway: str) -> None:
    for path, status in (("/api/auth/signup", 201), ("/api/auth/login", 200)):
        reply = await http("POST", gateway + path, json={"email": "a@example.com"})
        assert reply.status == status
        attrs = cookie_attributes(reply.headers["Set-Cookie"])
        assert attrs["name"] == "session"
        assert attrs["value"] == reply.json()["token"]
        assert {"httponly", "secure", "path", "samesite", "max-age"} <= attrs.keys()
        assert (attrs["path"], attrs["samesite"]) == ("/", "Lax")
        assert 30 * 86400 - 60 <= int(attrs["max-age"]) <= 30 * 86400


async def test_cookie_secure_can_be_turned_off(http: Client, start_gateway: Callable[..., Process]) -> None:
    insecure = url_of(start_gateway(cookie_secure="false"))
    reply = await http("POST", f"{insecure}/api/auth/login", json={"email": "a@example.com"})
    assert "secure" not in cookie_attributes(reply.headers["Set-Cookie"])


async def test_logout_clears_the_cookie_and_strips_the_marker(
    http: Client, gateway: str, upstream: Stub
) -> None:
    token, _ = await upstream.session()
    reply = await http(
        "POST", f"{gateway}/api/auth/logout", headers={**cookie(token), "Origin": ALLOWED_ORIGIN}
    )
    assert reply.status == 204
    assert "X-Session-Ended" not in reply.headers
    attrs = cookie_attributes(reply.headers["Set-Cookie"])
    assert (attrs["name"], attrs["value"], attrs["max-age"]) == ("session", "", "0")
    assert parsedate_to_datetime(attrs["expires"]).year == 1970
    assert (await http("GET", f"{gateway}/api/users/me", headers=cookie(token))).status == 401


async def test_cookie_is_resent_when_the_session_slides(
    http: Client, gateway: str, upstream: Stub, redis: Redis
) -> None:
    token, sid = await upstream.session()
    await upstream.state(renew=True)
    reply = await http("GET", f"{gateway}/api/users/me", headers=cookie(token))
    assert cookie_attributes(reply.headers["Set-Cookie"])["value"] == token
    await redis.delete(cache_key(sid))
    reply = await http("GET", f"{gateway}/api/users/me", headers=bearer(token))
    assert "Set-Cookie" not in reply.headers  # Bearer clients get no cookie
    reply = await http("GET", f"{gateway}/api/users/me", headers=cookie(token))
    assert "Set-Cookie" not in reply.headers  # a cache hit: nothing slid


async def test_invalid_cookie_is_cleared_with_the_401(http: Client, gateway: str) -> None:
    reply = await http("GET", f"{gateway}/api/users/me", headers=cookie("b" * 32))
    assert reply.status == 401
    assert cookie_attributes(reply.headers["Set-Cookie"])["max-age"] == "0"


@pytest.mark.parametrize("origin", [None, "null", "http://evil.example", ALLOWED_ORIGIN + ".evil.example"])
async def test_cookie_changes_need_an_allowed_origin(
    http: Client, gateway: str, upstream: Stub, origin: str | None
) -> None:
    token, _ = await upstream.session()
    headers = cookie(token) | ({"Origin": origin} if origin else {})
    for method, path in (
        ("POST", "/api/canvases"),
        ("PATCH", "/api/canvases/x"),
        ("DELETE", "/api/users/me"),
    ):
        reply = await http(method, gateway + path, headers=headers, json={})
        assert reply.status == 403, (method, path)
        assert reply.headers["Content-Type"] == "application/problem+json"


async def test_cookie_changes_with_an_allowed_origin_and_reads_without_pass(
    http: Client, gateway: str, upstream: Stub
) -> None:
    token, _ = await upstream.session("csrf-user")
    reply = await http(
        "POST", f"{gateway}/api/canvases", headers={**cookie(token), "Origin": ALLOWED_ORIGIN}, json={}
    )
    assert reply.status == 200
    assert reply.json()["credential"]["uid"] == "csrf-user"
    assert (await http("GET", f"{gateway}/api/users/me", headers=cookie(token))).status == 200


async def test_bearer_changes_ignore_origin(http: Client, gateway: str, upstream: Stub) -> None:
    token, _ = await upstream.session()
    for extra in ({}, {"Origin": "http://evil.example"}, {"Origin": "null"}):
        reply = await http("POST", f"{gateway}/api/canvases", headers={**bearer(token), **extra}, json={})
        assert reply.status == 200


@pytest.mark.parametrize(
    ("origin", "status"), [(None, 201), (ALLOWED_ORIGIN, 201), ("http://evil.example", 403)]
)
async def test_signup_and_login_origin_rules(
    http: Client, gateway: str, origin: str | None, status: int
) -> None:
    headers = {"Origin": origin} if origin else {}
    reply = await http("POST", f"{gateway}/api/auth/signup", json={"email": "o@example.com"}, headers=headers)
    assert reply.status == status
    reply = await http("POST", f"{gateway}/api/auth/login", json={"email": "o@example.com"}, headers=headers)
    assert reply.status == (200 if status == 201 else 403)


async def test_cors_for_configured_origins(http: Client, gateway: str) -> None:
    preflight = {"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "PATCH"}
    reply = await http("OPTIONS", f"{gateway}/api/canvases/abc", headers=preflight)
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    reply = await http(
        "OPTIONS", f"{gateway}/api/canvases/abc", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert reply.status == 400
    reply = await http("GET", f"{gateway}/api/canvases", headers={"Origin": ALLOWED_ORIGIN})
    assert reply.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "X-Request-Id" in reply.headers["Access-Control-Expose-Headers"]
    reply = await http("GET", f"{gateway}/api/canvases", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in reply.headers


async def metric(http: Client, gateway: str, name: str, **labels: str) -> float:
    text = (await http("GET", f"{gateway}/metrics")).body.decode()
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_cache_hit_miss_and_purge_on_revocation(
    http: Client, gateway: str, upstream: Stub, redis: Redis
) -> None:
    token, sid = await upstream.session("cached-user")
    calls = (await upstream.state())["validate_calls"]
    hits = await metric(http, gateway, "canvasverse_gateway_session_cache_total", result="hit")
    assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 200
    assert (await upstream.state())["validate_calls"] == calls + 1
    assert await redis.ttl(cache_key(sid)) in range(1, 61)
    for _ in range(3):
        assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 200
    assert (await upstream.state())["validate_calls"] == calls + 1
    assert await metric(http, gateway, "canvasverse_gateway_session_cache_total", result="hit") == hits + 3
    await upstream.revoke(sid)  # deletes the session and purges its cache entry
    assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 401


async def test_short_sessions_are_cached_no_longer_than_they_live(
    http: Client, gateway: str, upstream: Stub, redis: Redis
) -> None:
    token, sid = await upstream.session(lifetime=5)
    assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 200
    assert 1 <= await redis.ttl(cache_key(sid)) <= 5


async def test_concurrent_misses_make_one_auth_call(http: Client, gateway: str, upstream: Stub) -> None:
    token, _ = await upstream.session("flight-user")
    await upstream.state(validate_delay=0.3)
    calls = (await upstream.state())["validate_calls"]
    replies = await asyncio.gather(
        *(http("GET", f"{gateway}/api/users/me", headers=bearer(token)) for _ in range(25))
    )
    assert [r.status for r in replies] == [200] * 25
    assert {r.json()["credential"]["uid"] for r in replies} == {"flight-user"}
    assert (await upstream.state())["validate_calls"] == calls + 1


async def test_revocation_during_validation_is_never_cached(
    http: Client, gateway: str, upstream: Stub, redis: Redis
) -> None:
    token, sid = await upstream.session()
    await upstream.state(answer_delay=0.5)  # auth has said "valid" but the answer is still on its way
    calls = (await upstream.state())["validate_calls"]
    first = asyncio.ensure_future(http("GET", f"{gateway}/api/users/me", headers=bearer(token)))

    async def validating() -> bool:  # the gateway's placeholder is set and auth has the question
        placed = await redis.exists(cache_key(sid))
        return bool(placed) and (await upstream.state())["validate_calls"] > calls

    while not await validating():  # noqa: ASYNC110 - both are another process's state
        await asyncio.sleep(0.01)
    await upstream.revoke(sid)
    assert (await first).status == 200  # validated before the revocation
    await upstream.state(answer_delay=0.0)
    assert not await redis.exists(cache_key(sid))
    assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 401


async def test_redis_down_falls_back_to_auth_and_fails_closed(
    http: Client,
    gateway: str,
    upstream: Stub,
    redis_server: RedisServer,
    start_gateway: Callable[..., Process],
) -> None:
    token, _ = await upstream.session("no-cache-user")
    assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 200
    no_auth = url_of(start_gateway(auth_url="http://127.0.0.1:9"))  # nothing listens on port 9
    mine = f"{no_auth}/api/users/me/canvases"  # routed to the (stub) canvas service
    assert (await http("GET", mine, headers=bearer(token))).status == 200  # a cache hit needs no auth
    redis_server.stop()
    try:
        calls = (await upstream.state())["validate_calls"]
        for _ in range(3):
            reply = await http("GET", f"{gateway}/api/users/me", headers=bearer(token))
            assert reply.status == 200
            assert reply.json()["credential"]["uid"] == "no-cache-user"
        assert (await upstream.state())["validate_calls"] == calls + 3
        assert (await http("GET", f"{gateway}/api/users/me", headers=bearer("c" * 32))).status == 401
        for _ in range(30):  # /ready answers from a check up to 1 s old
            ready = await http("GET", f"{gateway}/ready")
            if ready.status == 503:
                break
            await asyncio.sleep(0.1)
        assert ready.status == 503
        assert "redis" in ready.json()["failed"]
        reply = await http("GET", mine, headers=bearer(token))
        assert reply.status == 503
        assert int(reply.headers["Retry-After"]) >= 1
    finally:
        redis_server.start()
    for _ in range(50):  # Redis is bypassed for GATEWAY_REDIS_COOLDOWN after its last failure
        calls = (await upstream.state())["validate_calls"]
        assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 200
        if (await upstream.state())["validate_calls"] == calls:
            break  # answered from the cache again
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the session cache was not used again after Redis came back")


async def _gets(redis: Redis) -> int:
    """GET commands this Redis has run (the gateway's session lookups among them)."""
    return int((await redis.info("commandstats")).get("cmdstat_get", {}).get("calls", 0))


async def _redis_gets_for(http: Client, url: str, token: str, redis: Redis, reads: int = 5) -> int:
    """How many GETs Redis ran while this gateway answered `reads` reads with this token (200 each)."""
    gets = await _gets(redis)
    for _ in range(reads):
        assert (await http("GET", f"{url}/api/users/me", headers=bearer(token))).status == 200
    return await _gets(redis) - gets


async def _remembered(http: Client, url: str, token: str, redis: Redis) -> None:
    """Wait until the gateway answers from its memory: its invalidation channel may be reopening
    (a moment after Redis restarted, one attempt a second)."""
    for _ in range(100):
        if await _redis_gets_for(http, url, token, redis) <= 1:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the gateway did not remember the session")


async def test_a_process_remembers_a_session_and_forgets_it_when_its_key_changes(
    http: Client, gateway: str, upstream: Stub, redis: Redis
) -> None:
    """The session memory (GATEWAY_SESSION_MEMORY_TTL): hits cost no Redis round trip, and any
    change of the key in Redis, by anyone, is seen by the very next request."""
    token, sid = await upstream.session("remembered-user")
    me = f"{gateway}/api/users/me"
    await _remembered(http, gateway, token, redis)
    assert await _redis_gets_for(http, gateway, token, redis, reads=20) <= 1  # one refill at most
    assert (await http("GET", me, headers=bearer(token))).json()["credential"]["uid"] == "remembered-user"
    cached = (await redis.get(cache_key(sid))) or b""
    await redis.set(cache_key(sid), cached.replace(b"remembered-user", b"rewritten-user"), ex=60)
    reply = await http("GET", me, headers=bearer(token))  # the very next request sees the new value
    assert reply.json()["credential"]["uid"] == "rewritten-user"
    calls = (await upstream.state())["validate_calls"]
    await redis.delete(cache_key(sid))
    assert (await http("GET", me, headers=bearer(token))).status == 200
    assert (await upstream.state())["validate_calls"] == calls + 1  # gone from memory too: auth asked
    await upstream.revoke(sid)
    assert (await http("GET", me, headers=bearer(token))).status == 401


async def test_a_revocation_reaches_every_gateway_process_before_its_answer(
    http: Client, gateway: str, upstream: Stub, redis: Redis, start_gateway: Callable[..., Process]
) -> None:
    other = url_of(start_gateway())
    token, sid = await upstream.session("two-gateways")
    for url in (gateway, other):
        await _remembered(http, url, token, redis)
    await upstream.revoke(sid)
    assert (await http("GET", f"{other}/api/users/me", headers=bearer(token))).status == 401
    assert (await http("GET", f"{gateway}/api/users/me", headers=bearer(token))).status == 401


async def test_a_lost_invalidation_channel_turns_the_memory_off_until_it_is_back(
    http: Client, gateway: str, upstream: Stub, redis: Redis
) -> None:
    token, _ = await upstream.session("channel-user")
    await _remembered(http, gateway, token, redis)
    channels = [c["id"] for c in await redis.client_list(_type="pubsub")]
    assert channels  # the gateways' invalidation channels (CLIENT TRACKING ... BCAST, to themselves)
    for client_id in channels:
        await redis.client_kill_filter(_id=client_id)
    assert await _redis_gets_for(http, gateway, token, redis) >= 5  # no memory without invalidations
    await _remembered(http, gateway, token, redis)  # the channel is opened again


async def test_the_memory_can_be_turned_off(
    http: Client, upstream: Stub, redis: Redis, start_gateway: Callable[..., Process]
) -> None:
    off = url_of(start_gateway(session_memory_ttl="0"))
    token, _ = await upstream.session("no-memory")
    assert (await http("GET", f"{off}/api/users/me", headers=bearer(token))).status == 200
    assert await _redis_gets_for(http, off, token, redis) >= 5
