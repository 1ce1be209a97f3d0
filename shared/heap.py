"""The garbage collector of a serving process: the startup heap frozen, young collections rarer.

Measured under load (issue 18, bench/FINDINGS.md "The garbage collector after startup"): with
CPython's defaults a cached canvas read spent 14-16 µs of its CPU in cyclic collections and a proxied
read in the gateway 6-7 µs, most of it in full collections that walk every object the process
holds (the imported modules, Litestar's app, the clients): 57-60 ms each, one to three every four
seconds, a stall of the whole event loop each time. The rest were young collections every 700 net
container allocations, which a few dozen requests in flight reach again and again although almost
every object they allocate is freed by reference counting when its request ends.

`settled_heap`, the last of an app's lifespan entries, so it runs once every client is built:
- collects once, then `gc.freeze()`s what is alive (the startup heap, which lives as long as the
  process): later collections skip it, as CPython's documentation suggests for long-running
  servers; a full collection then walks only what requests and caches made since;
- raises the young generation's threshold to `YOUNG_THRESHOLD`: a collection still runs whenever
  that many container objects outlive their allocation (cyclic garbage included), so memory stays
  bounded; the older generations keep CPython's ratios.
At shutdown it restores both (`gc.unfreeze()`: the frozen objects can be collected again, which
matters where apps start and stop in one process, as in the tests).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

YOUNG_THRESHOLD = 10_000  # CPython's default is 700


@asynccontextmanager
async def settled_heap(_: Litestar) -> AsyncIterator[None]:
    young, middle, old = before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
