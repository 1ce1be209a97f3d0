"""The garbage collector of a serving process (shared/heap.py): the startup heap frozen while an app
runs, the young threshold raised, both restored when it stops, and cyclic garbage still collected."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from litestar import Litestar

from shared.heap import YOUNG_THRESHOLD, settled_heap
from tests import asgi


class _Cycle:
    def __init__(self) -> None:
        self.me: Any = self


async def test_frozen_while_running_and_restored_after() -> None:
    before = gc.get_threshold()
    async with settled_heap(Litestar()):
        assert gc.get_freeze_count() > 1000  # the test process's modules, at least
        assert gc.get_threshold() == (max(before[0], YOUNG_THRESHOLD), before[1], before[2])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


async def test_cyclic_garbage_is_still_collected_under_the_raised_threshold() -> None:
    async with settled_heap(Litestar()):
        first = _Cycle()
        gone = weakref.ref(first)
        del first
        assert gone() is not None  # a cycle: reference counting alone does not free it
        for _ in range(3 * YOUNG_THRESHOLD):  # garbage cycles, as requests that raise leave behind
            _Cycle()
        assert gone() is None  # a young collection ran on its own and freed the first one


async def test_every_app_settles_its_heap_once_started() -> None:
    from gateway.app import create_app as gateway_app
    from gateway.settings import from_environment as gateway_settings
    from services.auth.app import create_app as auth_app
    from services.canvas.app import create_app as canvas_app
    from tests.auth.support import auth_settings
    from tests.canvas.support import canvas_settings

    for app in (canvas_app(canvas_settings()), auth_app(auth_settings()), gateway_app(gateway_settings())):
        before = gc.get_freeze_count()  # 0, unless another app runs in this process
        async with asgi.running(app):
            assert gc.get_freeze_count() > before
            assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        assert gc.get_freeze_count() == 0
