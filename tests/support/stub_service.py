"""A tiny real upstream for the gateway's own tests: plays the auth and the canvas service.

It speaks the internal contract (docs/api.md, "Internal"): validates sessions from an in-memory table, issues
tokens on signup/login, ends the caller's session on logout, and echoes every other /api request
(method, path, query, body, headers, the verified credential) so tests can see what was forwarded.
`/stub/*` lets a test steer it (slow validation, renewal) and read how often it was asked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from litestar import Request, Response, get, post, route
from litestar.params import FromPath, JSONBody
from litestar.response import Stream

from shared.app import create_service_app
from shared.auth_middleware import caller_of
from shared.session_cache import purge
from shared.settings import CommonSettings, from_env
from shared.timeutil import rfc3339, utcnow

settings = from_env(CommonSettings)
SESSIONS: dict[str, dict[str, Any]] = {}
STATE: dict[str, Any] = {"validate_calls": 0, "validate_delay": 0.0, "answer_delay": 0.0, "renew": False}
redis = aioredis.Redis.from_url(settings.redis_url)


def new_session(user_id: str, lifetime: timedelta = timedelta(days=30)) -> tuple[str, dict[str, Any]]:
    token = base64.b32encode(secrets.token_bytes(20)).decode().lower()
    sid = hashlib.sha256(token.encode()).hexdigest()
    SESSIONS[sid] = {"userId": user_id, "expiresAt": rfc3339(utcnow() + lifetime)}
    return token, SESSIONS[sid]


@post("/internal/sessions/validate", status_code=200)
async def validate(data: JSONBody[dict[str, str]]) -> Response[Any]:
    STATE["validate_calls"] += 1
    if STATE["validate_delay"]:
        await asyncio.sleep(STATE["validate_delay"])
    session = SESSIONS.get(data["sessionId"])
    if session is None:
        return Response({"status": 404, "title": "Not Found", "detail": "no session"}, status_code=404)
    if STATE["answer_delay"]:  # answers "valid" late: a revocation can land in between
        await asyncio.sleep(STATE["answer_delay"])
    return Response({**session, "sessionId": data["sessionId"], "renewed": STATE["renew"]})


@post("/api/auth/signup", status_code=201)
async def signup(data: JSONBody[dict[str, str]]) -> dict[str, Any]:
    token, session = new_session(data.get("email", "someone"))
    return {"user": {"id": session["userId"]}, "token": token, "expiresAt": session["expiresAt"]}


@post("/api/auth/login", status_code=200)
async def login(data: JSONBody[dict[str, str]]) -> dict[str, Any]:
    STATE["logins_waiting"] = STATE.get("logins_waiting", 0) + 1
    try:
        for _ in range(200):  # while a test holds logins (at most 10 s)
            if not STATE.get("hold_logins"):
                break
            await asyncio.sleep(0.05)
    finally:
        STATE["logins_waiting"] -= 1
    return await signup.fn(data)  # type: ignore[no-any-return]


@post("/api/auth/logout", status_code=204)
async def logout(request: Request[Any, Any, Any]) -> Response[None]:
    sid = caller_of(request).sid
    SESSIONS.pop(sid or "", None)
    await purge(redis, [sid] if sid else [])
    return Response(None, status_code=204, headers={"X-Session-Ended": "1"})


@get("/api/canvases/big")
async def big() -> Stream:
    async def chunks() -> Any:
        for _ in range(16):
            yield b"x" * 65536

    return Stream(chunks(), media_type="application/octet-stream")


@route("/api/{rest:path}", http_method=["GET", "HEAD", "POST", "PATCH", "DELETE"], status_code=200)
async def echo(request: Request[Any, Any, Any], rest: FromPath[str]) -> Response[Any]:
    cred = caller_of(request)
    body = await request.body()
    return Response(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "body": body.decode(errors="replace"),
            "headers": dict(request.headers),
            "credential": {"uid": cred.uid, "sid": cred.sid, "rid": cred.rid, "ip": cred.ip},
        },
        headers={"X-Upstream": "stub", "X-Session-Ended": "1"},
    )


@post("/stub/sessions", status_code=201)
async def add_session(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    token, session = new_session(data["userId"], timedelta(seconds=data.get("lifetime", 30 * 86400)))
    return {"token": token, **session}


@post("/stub/revoke", status_code=204)
async def revoke(data: JSONBody[dict[str, str]]) -> None:
    SESSIONS.pop(data["sessionId"], None)
    await purge(redis, [data["sessionId"]])


@post("/stub/state", status_code=200)
async def set_state(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    STATE.update(data)
    return STATE


@get("/stub/state")
async def get_state() -> dict[str, Any]:
    return STATE


async def _ok() -> None:
    STATE["ready_checks"] = STATE.get("ready_checks", 0) + 1


app = create_service_app(
    name=os.environ.get("STUB_NAME", "stub"),
    audiences={"auth", "canvas"},  # it plays both services
    settings=settings,
    route_handlers=[validate, signup, login, logout, big, echo, add_session, revoke, set_state, get_state],
    ready_checks={"redis": redis.ping, "nothing": _ok},
)
