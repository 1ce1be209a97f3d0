"""Password hashing with argon2id, always in a worker thread (docs/architecture.md, decision 8).

The hashing threads are a small dedicated pool: each hash holds `argon2_memory_kib` of memory, so
the pool size bounds memory under a login storm, and hashing never blocks the event loop.

The queue in front of the threads is bounded too: with `AUTH_HASH_QUEUE` hashes already running or
waiting in this process, another one is refused at once with 503 + Retry-After instead of joining
a backlog that would answer seconds later, or time out at the gateway (issue 14). The pool's own
queue is unbounded, hence the count kept here.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from prometheus_client import Counter

from services.auth.settings import settings
from shared.errors import Unavailable

T = TypeVar("T")

HASH_REFUSED = Counter(
    "canvasverse_auth_password_hash_refused_total", "Password hashes refused (503) because the queue was full"
)
HASHES = Counter("canvasverse_auth_password_hashes_total", "Password hashes and checks run")

hasher = PasswordHasher(
    time_cost=settings.argon2_time_cost,
    memory_cost=settings.argon2_memory_kib,
    parallelism=settings.argon2_parallelism,
    type=Type.ID,
)
# argon2 releases the GIL and takes a core per thread: by default half the cores hash, so a storm
# of password work leaves the other half to every request that hashes nothing (issue 14).
_pool = ThreadPoolExecutor(
    max_workers=settings.hash_threads or max(1, (os.cpu_count() or 2) // 2), thread_name_prefix="argon2"
)


class _Queue:
    size = 0  # hashes running or waiting in _pool


_queue = _Queue()
HASH_BUSY = "Password checks are at capacity; try again shortly"


class HashingBusy(Unavailable):
    def __init__(self) -> None:
        super().__init__(HASH_BUSY, retry_after=1)


def queued() -> int:
    return _queue.size


async def _off_loop(fn: Callable[..., T], *args: object) -> T:
    if _queue.size >= settings.hash_queue:
        HASH_REFUSED.inc()
        raise HashingBusy
    _queue.size += 1
    HASHES.inc()
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
    finally:
        _queue.size -= 1


@functools.cache
def _dummy_hash() -> str:
    """A hash nobody knows the password of, checked for unknown emails so timing reveals nothing."""
    return hasher.hash(secrets.token_urlsafe(32))


def _verify(stored: str | None, password: str) -> bool:
    try:
        return hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def warm_up() -> None:
    """Make the dummy hash at start-up, so the first unknown-email login is not the slow one."""
    await _off_loop(_dummy_hash)


async def hash_password(password: str) -> str:
    return await _off_loop(hasher.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; `None` (no such user) costs the same and is False."""
    return await _off_loop(_verify, stored, password)


def needs_rehash(stored: str) -> bool:
    """The hash was made with other parameters than today's (checked after a successful login)."""
    return hasher.check_needs_rehash(stored)
