"""The canvas service as real processes: two of them sharing the view counters, a crash, a restart;
the reconciliation sweep against the real auth service; the operator commands (dead letters)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from devtools.processes import ROOT, Process
from services.canvas import reconcile, streams
from services.canvas import view_counter as views_module
from services.canvas.auth_client import AuthClient
from services.canvas.read_cache import ReadCache
from services.canvas.tables import Canvas, DeletedUser
from shared import internal_auth
from shared.events import DEAD_LETTER_STREAM, USER_EVENTS_STREAM
from tests.canvas.support import SECRET, canvas_body, insert_canvases, signed, stored_views
from tests.support.processes import url_of, web_process

pytestmark = pytest.mark.slow


def service_process(data_dir: Path, name: str, app: str, env: dict[str, str] | None = None) -> Process:
    return web_process(name, app, env or {}, data_dir / "logs")


def canvas_process(data_dir: Path, name: str) -> Process:
    env = {"CANVAS_FLUSH_INTERVAL": "0.2", "CANVAS_CONSUMER_BLOCK_MS": "200"}
    return service_process(data_dir, name, "services.canvas.app:app", env)


async def call(
    http: aiohttp.ClientSession, process: Process, method: str, path: str, uid: str | None, **kwargs: Any
) -> dict[str, Any]:
    async with http.request(
        method,
        url_of(process) + path,
        headers=signed(uid, "auth" if process.name == "auth" else "canvas"),
        **kwargs,
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def test_views_are_exact_across_two_processes_a_crash_and_a_restart(
    data_dir: Path, redis: Redis
) -> None:
    a, b = canvas_process(data_dir, "canvas-a"), canvas_process(data_dir, "canvas-b")
    try:
        a.start()
        b.start()
        owner = str(uuid.uuid4())
        async with aiohttp.ClientSession() as http:
            canvas = await call(http, a, "POST", "/api/canvases", owner, json=canvas_body(isPublic=True))
            path = f"/api/canvases/{canvas['id']}"
            reads = await asyncio.gather(*(call(http, (a, b)[i % 2], "GET", path, None) for i in range(200)))
            seen = [r["views"] for r in reads]
            assert all(1 <= n <= 200 for n in seen)
            assert max(seen) == 200, str(sorted(seen))

            a.kill()  # both die abruptly: no final flush
            b.kill()
            a.start()
            assert (await call(http, a, "GET", path, owner))["views"] == 201
        a.stop()  # graceful: the last flush
        assert await stored_views(canvas["id"]) == 201
        assert await redis.smembers(views_module.PENDING_KEY) == set()
    finally:
        a.stop()
        b.stop()


async def owned(user_id: str) -> int:
    return await Canvas.count().where(Canvas.user_id == uuid.UUID(user_id)).run()


async def test_the_sweep_asks_the_real_auth_service(data_dir: Path, cache: ReadCache) -> None:
    auth = service_process(data_dir, "auth", "services.auth.app:app").start()
    try:
        async with aiohttp.ClientSession() as http:
            password = "correct horse battery staple"
            body = {"email": f"sweep-{uuid.uuid4().hex[:8]}@example.com", "password": password}
            signup = await call(http, auth, "POST", "/api/auth/signup", None, json=body)
            user_id, session_id = signup["user"]["id"], hashlib.sha256(signup["token"].encode()).hexdigest()
            ghost = str(uuid.uuid4())  # never existed in the auth service
            await insert_canvases(uuid.UUID(user_id), 2)
            await insert_canvases(uuid.UUID(ghost), 2)
            client = AuthClient(http, url_of(auth), SECRET)

            first = await reconcile.sweep(client, cache, batch=1000, delete_batch=100, max_unknown_fraction=1)
            assert first.owners_removed >= 1
            assert (await owned(user_id), await owned(ghost)) == (2, 0)

            # The user is deleted, and the user.deleted event never reaches us (no relay runs here).
            credential = internal_auth.sign(SECRET, audience="auth", user_id=user_id, session_id=session_id)
            async with http.delete(
                url_of(auth) + "/api/users/me",
                json={"password": password},
                headers={internal_auth.HEADER: credential},
            ) as resp:
                assert resp.status == 204, await resp.text()
            await reconcile.sweep(client, cache, batch=1000, delete_batch=100, max_unknown_fraction=1)
            assert await owned(user_id) == 0
            assert await DeletedUser.exists().where(DeletedUser.user_id == uuid.UUID(user_id)).run()
    finally:
        auth.stop()


async def run_tool(*args: str) -> list[dict[str, str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.canvas.deadletters",
        *args,
        cwd=ROOT,
        env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


async def test_dead_letters_can_be_listed_and_replayed(redis: Redis) -> None:
    event = json.dumps({"type": "user.deleted", "eventId": str(uuid.uuid4()), "userId": str(uuid.uuid4())})
    letter = {
        b"event": event.encode(),
        streams.SOURCE_STREAM: USER_EVENTS_STREAM.encode(),
        streams.SOURCE_ID: b"1-0",
        streams.ERROR: b"failed 5 times: database unavailable",
        streams.DELIVERIES: b"5",
        streams.CONSUMER: b"host-1",
    }
    dead_id = (await redis.xadd(DEAD_LETTER_STREAM, letter)).decode()  # type: ignore[arg-type]
    listed = {entry["id"]: entry for entry in await run_tool("list")}
    assert listed[dead_id]["event"] == event
    assert listed[dead_id]["dead-letter:error"] == "failed 5 times: database unavailable"
    assert await run_tool("list", dead_id) == [listed[dead_id]]

    [replayed] = await run_tool("replay", dead_id)
    assert replayed["id"] == dead_id
    [(_, fields)] = await redis.xrange(USER_EVENTS_STREAM, replayed["replayedAs"], replayed["replayedAs"])
    assert fields == {b"event": event.encode()}
    assert await redis.xrange(DEAD_LETTER_STREAM, dead_id, dead_id) == []


async def test_the_tool_explains_its_usage() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.canvas.deadletters", "purge", cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert b"usage:" in err
