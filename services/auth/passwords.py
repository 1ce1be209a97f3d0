"""Password hashing with argon2id, always in a worker thread (docs/architecture.md, decision 8).

The hashing threads are a small dedicated pool: each hash holds `argon2_memory_kib` of memory, so
the pool size bounds memory under a login storm, and hashing never blocks the event loop.

The hashing threads run at a lower CPU priority (Linux): nice `AUTH_HASH_NICE` (10), so when the
cores are contended the threads that answer requests that hash nothing (session checks,
`/users/me`) are scheduled first and hashing still gets about a tenth of a core. On an idle machine a
hash takes as long as ever. A flood of password work therefore slows password work, not everyone
(issue 14). `AUTH_HASH_IDLE=true` puts them under `SCHED_IDLE` instead: a request then preempts a
hash the moment it wakes, but a machine kept busy by anything else starves hashing (a hash 23 ms
idle, 0.3 s at nice 10 and 39 s under `SCHED_IDLE` beside two busy loops), so it is opt-in.
A higher nice value costs the same way, less so: 2.7 s a hash at nice 19 beside the two loops
(0.4 s at nice 10 in the same run), for a gain in scenario 9 within its noise: 10 is the default.
Either orders the hashing threads among the threads of their scheduling group only: Linux shares
the cores between groups first. `make run` keeps the whole system in one group (one session, hence
one autogroup: devtools/processes.py), so there the hashing threads yield to every service's
requests; under compose each container is a cgroup of its own, and against the other containers
the auth service weighs as one group whatever its threads' priorities (bench/FINDINGS.md, 2026-12-08).

The queue in front of the threads is bounded too: with `AUTH_HASH_QUEUE` hashes already running or
waiting in this app, another one is refused at once with 503 + Retry-After instead of joining
a backlog that would answer seconds later, or time out at the gateway (issue 14). The pool's own
queue is unbounded, hence the count kept here.

`Passwords` is built by the app from its settings (argon2 parameters, queue bound).
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from prometheus_client import Counter

from services.auth.settings import AuthSettings
from shared.errors import Unavailable

T = TypeVar("T")

HASH_REFUSED = Counter(
    "canvasverse_auth_password_hash_refused_total", "Password hashes refused (503) because the queue was full"
)
HASHES = Counter("canvasverse_auth_password_hashes_total", "Password hashes and checks run")
HASH_BUSY = "Password checks are at capacity; try again shortly"


def _lower_priority(nice: int, idle: bool) -> None:
    """Thread initializer: this thread to SCHED_IDLE, or else its nice value raised (Linux schedules
    threads one by one; pid 0 is the calling thread)."""
    if idle and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError:  # not permitted here: fall back to the nice value
            pass
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), nice))
    except OSError:  # not permitted here: hash at the normal priority
        return


class HashingBusy(Unavailable):
    def __init__(self) -> None:
        super().__init__(HASH_BUSY, retry_after=1)


class Passwords:
    """argon2id with the parameters of the settings it was built from (one per app)."""

    def __init__(self, config: AuthSettings) -> None:
        self.hasher = PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
            type=Type.ID,
        )
        self.queue_limit = config.hash_queue
        # argon2 releases the GIL and takes a core per thread: by default half the cores hash, so a
        # storm of password work leaves the other half to every request that hashes nothing (issue 14).
        self._pool = ThreadPoolExecutor(
            max_workers=config.hash_threads or max(1, (os.cpu_count() or 2) // 2),
            thread_name_prefix="argon2",
            initializer=_lower_priority,
            initargs=(config.hash_nice, config.hash_idle),
        )
        self.queued = 0  # hashes running or waiting in the pool

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        if self.queued >= self.queue_limit:
            HASH_REFUSED.inc()
            raise HashingBusy
        self.queued += 1
        HASHES.inc()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.queued -= 1

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """A hash nobody knows the password of, checked for unknown emails so timing reveals nothing."""
        return self.hasher.hash(secrets.token_urlsafe(32))

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy_hash, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    async def warm_up(self) -> None:
        """Make the dummy hash at start-up, so the first unknown-email login is not the slow one."""
        await self._off_loop(lambda: self._dummy_hash)

    async def hash(self, password: str) -> str:
        return await self._off_loop(self.hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when `password` matches `stored`; `None` (no such user) costs the same and is False."""
        return await self._off_loop(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        """The hash was made with other parameters than today's (checked after a successful login)."""
        return self.hasher.check_needs_rehash(stored)
