"""5. Deep pages: with many public canvases, the page after N items against the first page."""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from bench import seed, timing, wrk
from bench.context import Context
from bench.load import Target, measure, warm
from bench.report import Outcome, Run, ms
from bench.scenarios.base import Scenario, check_errors

CONNECTIONS = 4
PAGE = 20
WALK_PAGE = 100
GOAL_RATIO = 1.5
SQL_SECONDS = 3.0
SUMMARY = "id, title, type, description, tags, user_id, is_public, views, created_at, updated_at"
ORDER = "ORDER BY created_at DESC, id DESC"
OFFSET_SQL = f"SELECT {SUMMARY} FROM canvas WHERE is_public = ? {ORDER} LIMIT ? OFFSET ?"
# The service's keyset condition (services/canvas/canvases.py:list_canvases).
KEYSET_SQL = (
    f"SELECT {SUMMARY} FROM canvas WHERE is_public = ? AND created_at <= ? AND (created_at < ? OR id < ?)"
    f" {ORDER} LIMIT ?"
)


async def _deep_cursor(ctx: Context, after: int) -> str:
    """Walk the public listing through the API, WALK_PAGE at a time, to the cursor after `after` items."""
    cursor = ""
    seen = 0
    while seen < after:
        query = f"/api/canvases?limit={WALK_PAGE}" + (f"&cursor={cursor}" if cursor else "")
        page: dict[str, Any] = await ctx.api.get(query)
        seen += len(page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            raise RuntimeError(f"the listing ended after {seen} items")
    if seen != after:
        raise RuntimeError(f"walked {seen} items, not {after}")
    return cursor


async def _sql_run(ctx: Context, label: str, sql: str, *args: Any) -> Run:
    async def query() -> None:
        await ctx.canvas_db.fetch(sql, *args)

    found = await timing.measure(query, SQL_SECONDS)
    return Run(
        label=label,
        target="canvas DB, bare driver",
        generator="sequential SQL",
        connections=1,
        requests=int(found["operations"]),
        seconds=found["seconds"],
        p50_ms=found["p50_ms"],
        p99_ms=found["p99_ms"],
    )


async def run(ctx: Context, out: Outcome) -> None:
    scale = ctx.options.scale
    owner = await ctx.api.signup("lister")
    await seed.canvases(ctx.canvas_db, owner.user_id, scale.deep_total, public=True, label="Listed")
    cursor = await _deep_cursor(ctx, scale.deep_after)
    first_path, deep_path = f"/api/canvases?limit={PAGE}", f"/api/canvases?limit={PAGE}&cursor={cursor}"
    gateway = ctx.system.url("gateway")
    pages = [
        Target("first page (API)", gateway, lambda: [wrk.Request(first_path)]),
        Target(f"page after {scale.deep_after:,} (API)", gateway, lambda: [wrk.Request(deep_path)]),
    ]
    # Both at once: whatever else the machine is doing then weighs on both latencies alike.
    await asyncio.gather(*(warm(ctx, page, CONNECTIONS) for page in pages))
    rounds = [
        await asyncio.gather(*(measure(ctx, page, CONNECTIONS) for page in pages))
        for _ in range(ctx.options.rounds)
    ]
    ratios = [(deep.p50_ms or 0) / (first.p50_ms or 1) for first, deep in rounds]
    first, deep = rounds[ratios.index(statistics.median_high(ratios))]  # with two rounds, the worse one
    position = await ctx.canvas_db.fetchrow(
        f"SELECT created_at, id FROM canvas WHERE is_public = ? {ORDER} LIMIT 1 OFFSET ?",
        True,
        scale.deep_after - 1,
    )
    assert position is not None
    at, last_id = position["created_at"], position["id"]
    offset_first = await _sql_run(ctx, "OFFSET 0 (SQL)", OFFSET_SQL, True, PAGE + 1, 0)
    offset_deep = await _sql_run(
        ctx, f"OFFSET {scale.deep_after:,} (SQL)", OFFSET_SQL, True, PAGE + 1, scale.deep_after
    )
    keyset_deep = await _sql_run(
        ctx, f"keyset after {scale.deep_after:,} (SQL)", KEYSET_SQL, True, at, at, last_id, PAGE + 1
    )
    out.runs = [first, deep, offset_first, offset_deep, keyset_deep]
    out.ratio, out.ratio_of = (deep.p50_ms or 0) / (first.p50_ms or 1), "deep / first page p50"
    out.ours = f"p50 {ms(first.p50_ms)} → {ms(deep.p50_ms)} ms"
    offset_ratio = (offset_deep.p50_ms or 0) / (offset_first.p50_ms or 1)
    out.reference = (
        f"OFFSET p50 {ms(offset_first.p50_ms)} → {ms(offset_deep.p50_ms)} ms ({offset_ratio:.1f}x)"
    )
    out.judge(out.ratio <= GOAL_RATIO)
    out.notes.append(
        f"{scale.deep_total:,} public canvases; at the SQL level the service's keyset query after "
        f"{scale.deep_after:,} items takes p50 {ms(keyset_deep.p50_ms)} ms against OFFSET's "
        f"{ms(offset_deep.p50_ms)} ms."
    )
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=5,
    title="Deep pages",
    goal=f"deep page p50 ≤ {GOAL_RATIO}x first page p50",
    doc=f"""
The public listing seeded with many public canvases (100,000; 10,000 with --quick) written straight
into the canvas database. The harness walks the listing through the API to the cursor after 10,000
items (1,000 with --quick), then wrk measures `GET /api/canvases?limit={PAGE}` (first page) and the
same with that cursor through the gateway, {CONNECTIONS} connections each, both at the same time (so
that whatever else runs on the machine weighs on both alike); of several rounds the one with the
median (upper) ratio counts. Ratio: deep p50 / first p50.
For contrast, the same listing with OFFSET on the bare driver (one connection, sequential), first
page and deep page, and the service's keyset query at the same depth.
""",
    profiled=("canvas",),
)
