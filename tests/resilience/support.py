"""Helpers for the resilience suite: members of the stack, its databases and streams, its processes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from redis.asyncio import Redis

from services.canvas.cascade import CONSUMER_GROUP
from shared.events import USER_EVENTS_STREAM, UserDeleted, decode_event
from tests.support.http import Client, Reply
from tests.support.system import Stack
from tests.support.users import PASSWORD, User, signup

T = TypeVar("T")


ANSWERS_WITHIN = 60.0  # seconds a phase of background traffic may take to be answered


async def member(http: Client, stack: Stack) -> User:
    """A new account (signed up through the gateway); its token goes on the stack's ledger."""
    user = await signup(http, stack.url)
    stack.tokens.append(user.token)
    return user


async def bounded(calls: Iterable[Awaitable[T]], limit: int = 4) -> list[T]:
    """Await all, at most `limit` at a time: password hashing runs two at a time on this machine, and
    a deep queue of hashes would outlast the gateway's read timeout (a 504 no test is about)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def log_in(
    http: Client,
    stack: Stack,
    email: str,
    password: str = PASSWORD,
    *,
    base: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST /api/auth/login (through `base`, by default the stack's gateway); a token goes on the ledger."""
    body = {"email": email, "password": password}
    reply = await http("POST", f"{base or stack.url}/api/auth/login", json=body, headers=headers or {})
    if reply.status == 200:
        stack.tokens.append(reply.json()["token"])
    return reply


async def current_session(user: User) -> str:
    """The id of the session the user's token stands for."""
    listed = (await user.call("GET", "/api/auth/sessions")).json()["items"]
    return next(s["id"] for s in listed if s["current"])  # type: ignore[no-any-return]


async def until_not_503(call: Callable[[], Awaitable[Reply]], tries: int = 100) -> Reply:
    """The first answer that is not a 503 (a dependency just came back), within `tries` tenths of a second."""
    for _ in range(tries):
        reply = await call()
        if reply.status != 503:
            return reply
        await asyncio.sleep(0.1)
    return reply


async def delete_account(user: User) -> None:
    reply = await user.call("DELETE", "/api/users/me", json={"password": PASSWORD})
    assert reply.status == 204, reply.body


async def canvases_of(stack: Stack, *user_ids: str) -> int:
    """Canvases the canvas database holds for these owners (private ones included)."""
    if not user_ids:
        return 0
    marks = ", ".join("?" for _ in user_ids)
    sql = f"SELECT COUNT(*) AS n FROM canvas WHERE CAST(user_id AS VARCHAR(36)) IN ({marks})"
    return int(await stack.canvas_db.scalar(sql, *user_ids))


async def canvases_gone(stack: Stack, *user_ids: str) -> bool:
    return await canvases_of(stack, *user_ids) == 0


async def owners(stack: Stack) -> set[str]:
    rows = await stack.canvas_db.fetch("SELECT DISTINCT CAST(user_id AS VARCHAR(36)) AS uid FROM canvas")
    return {row["uid"] for row in rows}


async def users(stack: Stack) -> set[str]:
    rows = await stack.auth_db.fetch("SELECT CAST(id AS VARCHAR(36)) AS uid FROM users")
    return {row["uid"] for row in rows}


async def unsent_events(stack: Stack) -> list[UserDeleted]:
    rows = await stack.auth_db.fetch("SELECT payload FROM outbox WHERE sent_at IS NULL")
    return [decode_event(row["payload"]) for row in rows]


async def published(redis: Redis, stream: str = USER_EVENTS_STREAM) -> list[tuple[str, dict[bytes, bytes]]]:
    return [(entry_id.decode(), fields) for entry_id, fields in await redis.xrange(stream)]


async def published_for(redis: Redis, user_id: str) -> list[UserDeleted]:
    found = []
    for _, fields in await published(redis):
        try:
            event = decode_event(fields[b"event"])
        except Exception:  # malformed entries are some tests' own doing
            continue
        if event.user_id == user_id:
            found.append(event)
    return found


async def group_settled(redis: Redis) -> bool:
    """The canvas consumer group has read every entry of the stream and acknowledged it."""
    groups: Any = await redis.xinfo_groups(USER_EVENTS_STREAM)
    group = next((g for g in groups if g["name"] in (CONSUMER_GROUP, CONSUMER_GROUP.encode())), None)
    return group is not None and int(group["pending"]) == 0 and group["lag"] == 0


async def insert_canvas(stack: Stack, owner: str) -> str:
    """A canvas written straight into the canvas database (what the API would refuse for `owner`)."""
    canvas_id, now = uuid.uuid4(), datetime.now(UTC)
    columns = ["id", "title", "type", "code", "description", "tags", "user_id", "is_public", "views"]
    columns += ["created_at", "updated_at"]
    row: tuple[Any, ...]
    if stack.canvas_db.sqlite:
        stamp = now.isoformat(sep=" ")
        row = (str(canvas_id), "raw", "raw", "", "", "[]", owner, 1, 0, stamp, stamp)
    else:
        row = (canvas_id, "raw", "raw", "", "", [], uuid.UUID(owner), True, 0, now, now)
    await stack.canvas_db.insert_many("canvas", columns, [row])
    return str(canvas_id)


class Traffic:
    """Workers calling the gateway in a loop; every answer is logged with the phase it was sent in.

    A call's label is read when it is sent and again when it is answered; a call whose label changed
    in between (it raced the change) is logged as "racing".
    """

    def __init__(self, calls: list[tuple[Callable[[], str], Callable[[], Awaitable[Reply]]]]) -> None:
        self.calls = calls  # (label at send time, call)
        self.phase = "before"
        self.log: list[tuple[str, str, int]] = []
        self.failed: list[str] = []  # the request ids of the 5xx answers, for `explain`
        self._stop = asyncio.Event()
        self._answered = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, workers: int = 4) -> None:
        self._tasks = [asyncio.create_task(self._work(i)) for i in range(workers)]

    async def _work(self, offset: int) -> None:
        n = offset
        while not self._stop.is_set():
            label, call = self.calls[n % len(self.calls)]
            n += 1
            phase, sent_as = self.phase, label()
            reply = await call()
            status = reply.status
            if status >= 500:
                self.failed.append(reply.headers.get("x-request-id", "?"))
            self.log.append((phase, sent_as if label() == sent_as else "racing", status))
            async with self._answered:
                self._answered.notify_all()

    async def answered(self, phase: str, count: int) -> None:
        """Wait until `count` more answers to requests sent in `phase` have arrived. Bounded: if the
        workers died (a call raised), `stop()` in the test's `finally` then raises their error."""
        target = sum(1 for p, _, _ in self.log if p == phase) + count
        async with asyncio.timeout(ANSWERS_WITHIN), self._answered:
            await self._answered.wait_for(lambda: sum(1 for p, _, _ in self.log if p == phase) >= target)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def statuses(self, label: str) -> Counter[int]:
        return Counter(status for _, sent_as, status in self.log if sent_as == label)

    def explain(self, stack: Stack, label: str) -> str:
        """The statuses of `label`, and every log line of the stack naming a 5xx answer's request id:
        an assertion's message that says which process failed and why."""
        lines = [str(self.statuses(label))]
        for path in sorted(stack.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            for n, line in enumerate(text):
                if any(rid in line for rid in self.failed[:3]):
                    lines += [f"{path.name}: {entry}" for entry in text[max(0, n - 30) : n + 5]]
        return "\n".join(lines)


def rss_kib(pid: int) -> int:
    """The resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        found = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert found, f"no VmRSS for {pid}"
    return int(found.group(1))
