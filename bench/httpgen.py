"""A Python load generator (aiohttp) for what wrk cannot do: an exact count of answered requests.

wrk stops at a deadline with requests still in flight, which the server may well complete and count;
an exact-count check needs every request awaited to its answer. This generator is only used for such
checks, never for a throughput figure.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import aiohttp

from bench.report import Run


async def fixed_count(
    label: str,
    url: str,
    *,
    total: int,
    connections: int,
    headers: Callable[[], dict[str, str]],
) -> tuple[Run, Counter[int]]:
    """GET `url` exactly `total` times over `connections` keep-alive connections; the answers by status."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    remaining = total
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                try:
                    async with http.get(url, headers=headers()) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except aiohttp.ClientError:
                    statuses[0] += 1
                latencies.append(time.perf_counter() - started)

        began, cpu_before = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(connections)))
        seconds = time.perf_counter() - began
        cpu_share = (time.process_time() - cpu_before) / seconds
    latencies.sort()
    run = Run(
        label=label,
        target=url,
        generator="aiohttp (exact count)",
        connections=connections,
        requests=total,
        seconds=seconds,
        errors=total - statuses[200],
        p50_ms=latencies[len(latencies) // 2] * 1000 if latencies else None,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
        generator_cpu=cpu_share,
    )
    return run, statuses
