"""2. Gateway overhead: the same read through the gateway against straight to the canvas service."""

from __future__ import annotations

from bench import wrk
from bench.context import Context
from bench.load import Target, judge_ratio, side_by_side
from bench.report import Outcome, rps
from bench.scenarios.base import Scenario, check_errors

CONNECTIONS = 64
GOAL_RATIO = 0.9  # issue 18 (was 0.8, issue 2)


async def run(ctx: Context, out: Outcome) -> None:
    reader = ctx.fixtures.reader
    path = f"/api/canvases/{ctx.fixtures.private_canvas}"

    def direct() -> list[wrk.Request]:
        credential = ctx.system.credential(reader.user_id, reader.session_id)
        return [wrk.Request(path, headers={"X-Internal-Auth": credential})]

    ours, ref = await side_by_side(
        ctx,
        [
            Target("gateway", ctx.system.url("gateway"), lambda: [wrk.Request(path, headers=reader.bearer)]),
            Target("canvas service direct", ctx.system.url("canvas"), direct),
        ],
        CONNECTIONS,
    )
    out.runs = [ours, ref]
    out.ours, out.reference = rps(ours), rps(ref)
    out.ratio_of = "gateway / direct req/s, median round"
    out.judge(judge_ratio(out, ours, ref, GOAL_RATIO))
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=2,
    title="Gateway overhead",
    goal=f"≥ {GOAL_RATIO}x direct req/s",
    doc=f"""
The same authenticated `GET /api/canvases/{{id}}` at {CONNECTIONS} connections through the gateway
(Bearer token) against straight to the canvas service with a valid internal credential for the same
user and session (signed by the harness just before each wrk run). Ratio: gateway req/s / direct req/s.
""",
    profiled=("gateway", "canvas"),
)
