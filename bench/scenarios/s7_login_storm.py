"""7. Login storm: canvas reads' p99 with 8 clients logging in continuously, against without."""

from __future__ import annotations

import asyncio
import json

from bench import bind_source, wrk
from bench.context import Context
from bench.load import Target, measure, warm
from bench.report import Outcome, ms
from bench.scenarios.base import Scenario, check_errors

READERS = 32
LOGGERS = 8
GOAL_RATIO = 3.0
# One address per login client, as eight people logging in would be: from one address, the gateway's
# per-client cap on password requests in flight (issue 14) would refuse half of them at once.
LOGIN_ADDRESSES = ",".join(f"127.0.0.{3 + i}" for i in range(LOGGERS))


async def run(ctx: Context, out: Outcome) -> None:
    accounts = [await ctx.api.signup(f"storm{i}") for i in range(LOGGERS)]
    gateway = ctx.system.url("gateway")
    reader = ctx.fixtures.reader
    read_path = f"/api/canvases/{ctx.fixtures.private_canvas}"
    reads = Target("reads alone", gateway, lambda: [wrk.Request(read_path, headers=reader.bearer)])
    stormy = Target(f"reads during {LOGGERS} login clients", gateway, reads.requests)
    logins = Target(
        "logins (continuous)",
        gateway,
        lambda: [
            wrk.Request(
                "/api/auth/login",
                method="POST",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"email": a.email, "password": a.password}),
            )
            for a in accounts
        ],
        env=bind_source.env(bind_source.build(ctx.workdir), LOGIN_ADDRESSES),
    )
    await warm(ctx, reads, READERS)
    alone = await measure(ctx, reads, READERS)
    storm = asyncio.create_task(
        measure(ctx, logins, LOGGERS, seconds=ctx.options.warmup + ctx.options.duration + 2)
    )
    await asyncio.sleep(ctx.options.warmup + 1)  # hashing in full swing before the reads are measured
    during = await measure(ctx, stormy, READERS)
    login_run = await storm
    out.runs = [alone, during, login_run]
    out.ours = f"p99 {ms(during.p99_ms)} ms during logins"
    out.reference = f"p99 {ms(alone.p99_ms)} ms alone"
    out.ratio, out.ratio_of = (during.p99_ms or 0) / (alone.p99_ms or 1), "p99 during / alone"
    out.judge(out.ratio <= GOAL_RATIO)
    out.notes.append(
        f"{login_run.rps:,.1f} logins/s (p50 {ms(login_run.p50_ms)} ms) from {LOGGERS} connections over "
        f"{LOGGERS} accounts; reads p50 {ms(alone.p50_ms)} ms alone, {ms(during.p50_ms)} ms during "
        "the logins."
    )
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=7,
    title="Login storm",
    goal=f"reads p99 ≤ {GOAL_RATIO}x p99 without logins",
    doc=f"""
{READERS} connections reading a canvas through the gateway (Bearer token) alone, then again while
a second wrk keeps {LOGGERS} connections logging in continuously (`POST /api/auth/login`, correct
passwords, {LOGGERS} accounts in turn: argon2id hashing in the auth service), each connection from
an address of its own (127.0.0.3 upwards, bench/bind_source.c), as {LOGGERS} clients would.
Ratio: reads p99 during the logins / reads p99 alone. All processes share the machine's cores, so
hashing competes with the read path for CPU even when it never blocks an event loop.
""",
    profiled=("auth", "gateway"),
)
