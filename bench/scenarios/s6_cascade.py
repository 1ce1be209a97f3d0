"""6. Cascade: deleting a user with many canvases, until the last of them is gone."""

from __future__ import annotations

import asyncio
import time

from bench import seed
from bench.context import Context
from bench.report import Outcome, Run
from bench.scenarios.base import Scenario

GOAL_SECONDS = 10.0
LINEAR_SLACK = 1.2  # "linear": the larger deletion may take up to 1.2 x (size ratio) x the smaller one
POLL = 0.05
TIMEOUT = 120.0
COUNT_SQL = "SELECT COUNT(*) FROM canvas WHERE user_id = ?"


async def _delete_and_wait(ctx: Context, size: int) -> Run:
    owner = await ctx.api.signup(f"cascade{size}")
    await seed.canvases(ctx.canvas_db, owner.user_id, size, public=False, label="Cascaded")
    present = await ctx.canvas_db.scalar(COUNT_SQL, owner.user_id)
    if present != size:
        raise RuntimeError(f"seeded {present} canvases, not {size}")
    started = time.perf_counter()
    await ctx.api.delete_user(owner)
    while await ctx.canvas_db.scalar(COUNT_SQL, owner.user_id):
        if time.perf_counter() - started > TIMEOUT:
            raise TimeoutError(f"canvases of a deleted user still there after {TIMEOUT:.0f} s")
        await asyncio.sleep(POLL)
    return Run(
        label=f"delete user with {size:,} canvases (canvases/s)",
        target="gateway DELETE /api/users/me, then the canvas DB",
        generator="API call + DB polling",
        connections=1,
        requests=size,
        seconds=time.perf_counter() - started,
    )


async def run(ctx: Context, out: Outcome) -> None:
    runs = [await _delete_and_wait(ctx, size) for size in ctx.options.scale.cascade_sizes]
    out.runs = runs
    small, large = runs[0], runs[-1]
    sizes = large.requests / small.requests
    out.ours = f"{large.seconds:.2f} s for {large.requests:,}"
    out.reference = f"{small.seconds:.2f} s for {small.requests:,}"
    out.ratio, out.ratio_of = large.seconds / small.seconds, f"time {large.requests:,} / {small.requests:,}"
    out.judge(large.seconds < GOAL_SECONDS and out.ratio <= LINEAR_SLACK * sizes)
    out.notes.append(
        f"Timed from the `DELETE /api/users/me` request (password check included) until no canvas of the "
        f"user is left in the canvas database (polled every {POLL * 1000:.0f} ms); {sizes:.0f}x the canvases "
        f"took {out.ratio:.1f}x the time."
    )


SCENARIO = Scenario(
    run=run,
    number=6,
    title="Cascade",
    goal=f"< {GOAL_SECONDS:.0f} s for the larger user; time ≤ {LINEAR_SLACK} x size ratio (linear)",
    doc="""
A user with 1,000 canvases and one with 10,000 (100 and 1,000 with --quick), seeded straight into
the canvas database, each deleted with `DELETE /api/users/me` through the gateway: the auth service
writes the deletion and its outbox row, the relay publishes `user.deleted`, the canvas service's
consumer deletes the canvases in batches. Measured: the time from the request until the canvas
database holds none of the user's canvases. Reference: the smaller user, for linearity.
""",
    needs=(),
    profiled=("canvas", "relay"),
)
