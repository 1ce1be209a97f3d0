"""The reconciliation sweep against the auth service's contract (POST /internal/users/existing).

The auth side here is a stand-in that implements docs/api.md "Internal" (credential check, 1..1000 ids, the
subset that exists); test_processes.py runs the sweep against the real auth service when it exists.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devtools.redis_server import free_port
from services.canvas import reconcile
from services.canvas.auth_client import AuthClient, AuthUnavailable
from services.canvas.read_cache import ReadCache
from services.canvas.tables import Canvas, DeletedUser
from shared import internal_auth
from tests.canvas.support import SECRET, Caller
from tests.support.problems import assert_problem
from tests.support.processes import run_reconcile


class AuthStandIn:
    def __init__(self) -> None:
        self.gone: set[str] = set()
        self.batches: list[list[str]] = []
        self.status = 200
        self.knows_nobody = False  # like an auth service pointed at an empty database

    async def existing(self, request: web.Request) -> web.Response:
        try:
            internal_auth.verify(SECRET, request.headers.get(internal_auth.HEADER), audiences={"auth"})
        except internal_auth.InvalidCredential:
            return web.json_response({"status": 401}, status=401)
        ids = (await request.json())["userIds"]
        if not 1 <= len(ids) <= 1000:
            return web.json_response({"status": 422}, status=422)
        self.batches.append(ids)
        if self.status != 200:
            return web.json_response({"status": self.status}, status=self.status)
        known = [] if self.knows_nobody else [i for i in ids if i not in self.gone]
        return web.json_response({"existing": known})


@pytest.fixture
async def auth() -> AsyncIterator[tuple[AuthStandIn, str]]:
    stand_in = AuthStandIn()
    app = web.Application()
    app.router.add_post("/internal/users/existing", stand_in.existing)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield stand_in, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def owned(user_id: str) -> int:
    return await Canvas.count().where(Canvas.user_id == uuid.UUID(user_id)).run()


async def make_ghosts(alice: Caller, count: int) -> list[Caller]:
    """Users who made canvases and were then deleted without the event reaching us."""
    ghosts = [Caller(alice.client, str(uuid.uuid4())) for _ in range(count)]
    for ghost in ghosts:
        await ghost.create()
        await ghost.create(isPublic=True)
    return ghosts


async def test_the_sweep_deletes_the_canvases_of_owners_auth_no_longer_knows(
    alice: Caller, auth: tuple[AuthStandIn, str], cache: ReadCache
) -> None:
    stand_in, url = auth
    await alice.create()
    ghosts = await make_ghosts(alice, 3)
    stand_in.gone = {str(g.uid) for g in ghosts}
    async with aiohttp.ClientSession() as http:
        result = await reconcile.sweep(
            AuthClient(http, url, SECRET), cache, batch=3, delete_batch=1, max_unknown_fraction=0.5
        )
    assert result.owners_removed >= 3
    assert result.canvases_deleted >= 6
    for ghost in ghosts:
        assert await owned(str(ghost.uid)) == 0
        assert await DeletedUser.exists().where(DeletedUser.user_id == uuid.UUID(str(ghost.uid))).run()
        assert_problem(
            await ghost.request("POST", "/api/canvases", json={"title": "t", "type": "t", "code": ""}), 403
        )
    assert await owned(str(alice.uid)) == 1
    assert max(len(b) for b in stand_in.batches) <= 3
    asked = [uid for batch in stand_in.batches for uid in batch]
    assert len(asked) == len(set(asked)) == result.owners_checked  # each owner asked about once


async def test_the_sweep_deletes_nothing_when_auth_cannot_answer(
    alice: Caller, auth: tuple[AuthStandIn, str], cache: ReadCache
) -> None:
    stand_in, url = auth
    [ghost] = await make_ghosts(alice, 1)
    stand_in.gone = {str(ghost.uid)}
    stand_in.status = 503
    async with aiohttp.ClientSession() as http:
        with pytest.raises(AuthUnavailable):
            await reconcile.sweep(
                AuthClient(http, url, SECRET), cache, batch=1000, delete_batch=100, max_unknown_fraction=0.5
            )
        with pytest.raises(AuthUnavailable):  # a wrong secret is refused by the auth side
            await reconcile.sweep(
                AuthClient(http, url, b"x" * 32),
                cache,
                batch=1000,
                delete_batch=100,
                max_unknown_fraction=0.5,
            )
        with pytest.raises(AuthUnavailable):  # nobody listening
            await reconcile.sweep(
                AuthClient(http, f"http://127.0.0.1:{free_port()}", SECRET),
                cache,
                batch=10,
                delete_batch=1,
                max_unknown_fraction=0.5,
            )
    assert await owned(str(ghost.uid)) == 2


async def test_the_sweep_deletes_nothing_when_auth_knows_nobody(
    alice: Caller, auth: tuple[AuthStandIn, str], cache: ReadCache, caplog: pytest.LogCaptureFixture
) -> None:
    stand_in, url = auth
    ghosts = await make_ghosts(alice, reconcile.GUARD_MIN_OWNERS)  # enough owners for the guard to apply
    stand_in.knows_nobody = True
    canvases = await Canvas.count().run()
    async with aiohttp.ClientSession() as http:
        with caplog.at_level(logging.INFO):
            result = await reconcile.sweep(
                AuthClient(http, url, SECRET), cache, batch=7, delete_batch=100, max_unknown_fraction=0.5
            )
    assert result.refused
    assert result.owners_unknown == result.owners_checked >= reconcile.GUARD_MIN_OWNERS
    assert (result.owners_removed, result.canvases_deleted) == (0, 0)
    assert await Canvas.count().run() == canvases
    ids = [uuid.UUID(str(g.uid)) for g in ghosts]
    assert not await DeletedUser.exists().where(DeletedUser.user_id.is_in(ids)).run()
    [(level, refused)] = [
        (record.levelname, record.msg)
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "reconcile_sweep_refused"
    ]
    assert level == "ERROR"
    assert refused["owners_checked"] == refused["owners_unknown"] == result.owners_checked


async def test_the_guard_counts_the_whole_pass_before_deleting(
    alice: Caller, auth: tuple[AuthStandIn, str], cache: ReadCache
) -> None:
    """The unknown owners of an early batch are not deleted before later batches are counted."""
    stand_in, url = auth
    ghosts = await make_ghosts(alice, reconcile.GUARD_MIN_OWNERS)
    stand_in.gone = {str(g.uid) for g in ghosts}
    async with aiohttp.ClientSession() as http:
        client = AuthClient(http, url, SECRET)
        refused = await reconcile.sweep(client, cache, batch=1, delete_batch=100, max_unknown_fraction=0)
        assert refused.refused
        assert refused.owners_unknown >= len(ghosts)
        assert all([await owned(str(g.uid)) == 2 for g in ghosts])
        allowed = await reconcile.sweep(client, cache, batch=1, delete_batch=100, max_unknown_fraction=1)
    assert not allowed.refused
    assert allowed.owners_removed >= len(ghosts)
    assert all([await owned(str(g.uid)) == 0 for g in ghosts])


async def reconcile_command(auth_url: str) -> tuple[int | None, bytes, dict[str, Any]]:
    """`python -m services.canvas.reconcile` against this auth URL: exit code, stderr, its result."""
    return await run_reconcile(env={"CANVAS_AUTH_URL": auth_url})


async def test_a_refused_sweep_from_the_command_line_exits_1(
    alice: Caller, auth: tuple[AuthStandIn, str]
) -> None:
    stand_in, url = auth
    ghosts = await make_ghosts(alice, reconcile.GUARD_MIN_OWNERS)
    stand_in.knows_nobody = True
    returncode, err, result = await reconcile_command(url)
    assert returncode == 1, err.decode()
    assert b"reconcile_sweep_refused" in err
    assert result["refused"]
    assert result["owners_removed"] == 0
    assert all([await owned(str(g.uid)) == 2 for g in ghosts])


async def test_reconcile_runs_on_demand_from_the_command_line(
    alice: Caller, auth: tuple[AuthStandIn, str]
) -> None:
    stand_in, url = auth
    [ghost] = await make_ghosts(alice, 1)
    stand_in.gone = {str(ghost.uid)}
    returncode, err, result = await reconcile_command(url)
    assert returncode == 0, err.decode()
    assert result["owners_removed"] >= 1
    assert await owned(str(ghost.uid)) == 0
