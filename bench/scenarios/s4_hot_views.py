"""4. Hot-canvas views: one public canvas read at 64 connections; exact count, and against a
per-request UPDATE."""

from __future__ import annotations

import asyncio
import time

from bench import httpgen, wrk
from bench.context import Context
from bench.load import Target, judge_ratio, side_by_side
from bench.report import Outcome, rps
from bench.scenarios.base import Scenario, check_errors
from bench.system import DEPLOYED_WORKERS
from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import free_port

CONNECTIONS = 64
GOAL_RATIO = 3.0
FLUSH_WAIT = 15.0  # seconds for the buffered views to reach the database


def _reference(ctx: Context) -> Process:
    port = free_port()
    env = {"BENCH_REF_DATABASE_URL": ctx.system.canvas_db_url, "BENCH_REF_POOL_SIZE": "10"}
    log = ctx.system.log_dir / "refapp.log"
    return Process(
        "refapp",
        uvicorn_cmd("bench.refapp:app", port, workers=DEPLOYED_WORKERS),
        env,
        log,
        f"http://127.0.0.1:{port}/health",
    )


async def _views(ctx: Context, canvas_id: str) -> int:
    headers = {"X-Internal-Auth": ctx.system.credential()}
    url = f"{ctx.system.url('canvas')}/api/canvases/{canvas_id}"
    async with ctx.api.http.get(url, headers=headers) as resp:
        resp.raise_for_status()
        return int((await resp.json())["views"])


async def _stored_views(ctx: Context, canvas_id: str) -> int:
    return int(await ctx.canvas_db.scalar("SELECT views FROM canvas WHERE id = ?", canvas_id))


async def _exact_count(ctx: Context, out: Outcome) -> bool:
    """N answered reads (every one awaited) must add exactly N, in the answers and in the database."""
    canvas_id = ctx.fixtures.public_canvas
    before = await _views(ctx, canvas_id)
    url = f"{ctx.system.url('canvas')}/api/canvases/{canvas_id}"
    run, statuses = await httpgen.fixed_count(
        "exact-count reads (canvas service)",
        url,
        total=ctx.options.scale.exact_reads,
        connections=CONNECTIONS,
        headers=lambda: {"X-Internal-Auth": ctx.system.credential()},
    )
    out.runs.append(run)
    answered = statuses[200]
    expected = before + answered + 1  # the final read counts itself
    after = await _views(ctx, canvas_id)
    deadline = time.monotonic() + FLUSH_WAIT
    stored = await _stored_views(ctx, canvas_id)
    while stored != expected and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        stored = await _stored_views(ctx, canvas_id)
    exact = after == expected == stored
    out.notes.append(
        f"Exact count: {answered:,} answered reads (statuses {dict(statuses)}) took the count from "
        f"{before:,} to {after:,} in the answer and {stored:,} in the database after the flush; "
        f"expected {expected:,}: " + ("exact." if exact else "NOT EXACT.")
    )
    return exact


async def run(ctx: Context, out: Outcome) -> None:
    """Both sides with docker-compose's worker count (issue 18: the goal is set "with the deployed
    worker counts"), whatever `--workers` the rest of the run uses; the canvas service is restarted
    with it for this scenario and back afterwards."""
    ref_canvas = await ctx.api.create_canvas(ctx.fixtures.reader, public=True, title="Reference canvas")
    await ctx.system.restart(("canvas",), workers=DEPLOYED_WORKERS)
    try:
        await _measure(ctx, out, ref_canvas)
    finally:
        await ctx.system.restart(("canvas",))


async def _measure(ctx: Context, out: Outcome, ref_canvas: str) -> None:
    reference = _reference(ctx)
    await asyncio.to_thread(reference.start, 60)
    assert reference.proc is not None
    ctx.system.also_watched["refapp"] = reference.proc.pid
    try:
        ours_path = f"/api/canvases/{ctx.fixtures.public_canvas}"
        ref_url = reference.health_url.removesuffix("/health") if reference.health_url else ""
        ours, ref, ceiling = await side_by_side(
            ctx,
            [
                Target(
                    "canvas service (Redis view buffer)",
                    ctx.system.url("canvas"),
                    lambda: [wrk.Request(ours_path, headers={"X-Internal-Auth": ctx.system.credential()})],
                ),
                Target(
                    f"per-request UPDATE ({ctx.db})",
                    ref_url,
                    lambda: [wrk.Request(f"/api/canvases/{ref_canvas}")],
                ),
                Target("ceiling: the reference app's empty route", ref_url, lambda: [wrk.Request("/health")]),
            ],
            CONNECTIONS,
        )
    finally:
        ctx.system.also_watched.pop("refapp", None)
        await asyncio.to_thread(reference.stop, 20)
    out.runs = [ours, ref, ceiling]
    out.ours, out.reference = rps(ours), rps(ref)
    out.ratio_of = "ours / per-request UPDATE req/s, median round"
    fast_enough = judge_ratio(out, ours, ref, GOAL_RATIO)
    out.notes.append(
        f"Ceiling: Litestar's empty route on uvicorn (the reference app's `/health`: no database, no "
        f"Redis, no middleware) answered {ceiling.rps:,.0f} req/s, {ceiling.rps / ref.rps:.2f}x the "
        "per-request UPDATE, in the same run: no handler on this stack and machine can do more."
    )
    exact = await _exact_count(ctx, out)
    if ctx.db == "postgres":
        out.judge(exact and fast_enough)
    else:
        out.goal = f"exact count (the {GOAL_RATIO:g}x goal is set on PostgreSQL)"
        out.judge(exact)
        out.notes.append(
            "The throughput goal is set against PostgreSQL, where every per-request UPDATE waits for the "
            "row lock and a commit; SQLite's ratio is shown for information."
        )
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=4,
    title="Hot-canvas views",
    goal=f"exact count; ≥ {GOAL_RATIO:g}x per-request UPDATE req/s on PostgreSQL",
    doc=f"""
{CONNECTIONS} connections reading one public canvas, straight to the canvas service (anonymous
internal credential), whose views are buffered in Redis and flushed in batches, against the
reference app `bench/refapp.py` serving the same GET with one `UPDATE canvas SET views = views + 1
... RETURNING` per request on the same database (asyncpg pool of the service's size, or one
autocommit aiosqlite connection), reading a second public canvas. Ratio: ours req/s / reference
req/s. For scale, the same reference app's empty `/health` route is measured alongside: the most any
Litestar handler on uvicorn serves here. Then the exact-count check: a fixed number of reads by the
aiohttp generator (every request awaited, which wrk cannot do at its deadline), the count before and
after in the answers, and the stored `views` once the flusher has run. Both sides run with
docker-compose's worker count ({DEPLOYED_WORKERS} uvicorn workers: the canvas service is restarted with
it for this scenario), whatever `--workers` the rest of the run uses: issue 18 sets the goal "with the
deployed worker counts".
""",
    profiled=("canvas",),
)
