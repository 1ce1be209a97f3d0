"""A served process's garbage collector under load (shared/heap.py), read from the gateway's own
/metrics (prometheus_client's `python_gc_collections_total`): proxied reads leave young collections
rare and trigger no full collection, where CPython's defaults ran one young collection every few
dozen requests and a full one (a stall of ~60 ms on this heap) every few thousand."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.support.http import Client
from tests.support.system import System
from tests.support.users import signup

pytestmark = [pytest.mark.e2e]

READS = 1500
AT_ONCE = 32


async def collections(http: Client, system: System) -> dict[str, float]:
    text = (await http("GET", system.metrics_url)).body.decode()
    found = re.findall(r'^python_gc_collections_total\{generation="(\d)"\} (\S+)$', text, re.MULTILINE)
    assert len(found) == 3, text[:500]
    return {generation: float(count) for generation, count in found}


async def test_proxied_reads_leave_the_collector_idle(http: Client, own_gateway: System) -> None:
    system = own_gateway
    user = await signup(http, system.url)
    canvas = await user.canvas()
    path = f"/api/canvases/{canvas['id']}"
    assert (await user.call("GET", path)).status == 200  # the session cached, the clients warm
    before = await collections(http, system)

    async def reader(count: int) -> set[int]:
        return {(await user.call("GET", path)).status for _ in range(count)}

    statuses = await asyncio.gather(*(reader(READS // AT_ONCE) for _ in range(AT_ONCE)))
    assert set().union(*statuses) == {200}
    after = await collections(http, system)
    assert after["2"] == before["2"], (before, after)  # no full collection
    assert after["0"] - before["0"] <= 3, (before, after)  # CPython's defaults: ~30 here
