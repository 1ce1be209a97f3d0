"""13. HTTP clients for the upstream hop: the client process's CPU per request, side by side."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys

from bench.clients import available, per_request_us
from bench.context import Context
from bench.report import Outcome, Run, Verdict
from bench.scenarios.base import Scenario, check_errors
from bench.scenarios.s11_cost import _floor

CONCURRENCY = 16
GATEWAY = "gateway (Upstream)"
REFERENCE = "reference (hand-written)"
# The gateway's client is judged against the cheapest library client measured beside it: more
# than this over it, and the cheaper one (or its options) is worth taking (issue 18).
GOAL = 1.25


def _run(name: str, rounds: list[dict[str, float]]) -> Run:
    def one(r: dict[str, float]) -> Run:
        return Run(
            label=name,
            target="bench/floorapp.py /empty",
            generator="bench.clients",
            connections=CONCURRENCY,
            requests=int(r["operations"]),
            seconds=r["seconds"],
            errors=int(r["errors"]),
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
            cpu_ms={"client": per_request_us(r) / 1000},
        )

    each = [one(r) for r in rounds]
    middle = statistics.median_low([r.rps for r in each])
    chosen = next(r for r in each if r.rps == middle)
    chosen.cpu_ms = {"client": statistics.median(r.cpu_ms["client"] for r in each)}
    chosen.rounds = each
    return chosen


async def run(ctx: Context, out: Outcome) -> None:
    floor = _floor(ctx)
    await asyncio.to_thread(floor.start, 60)
    assert floor.health_url is not None
    base = floor.health_url.removesuffix("/health")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.clients",
            base,
            "--json",
            "--seconds",
            str(ctx.options.duration),
            "--rounds",
            str(ctx.options.rounds),
            "--concurrency",
            str(CONCURRENCY),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
    finally:
        await asyncio.to_thread(floor.stop, 20)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.clients failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    results: dict[str, list[dict[str, float]]] = json.loads(stdout)
    out.runs = [_run(name, rounds) for name, rounds in results.items()]
    costs = {r.label: [x.cpu_ms["client"] * 1000 for x in r.rounds] for r in out.runs}
    libraries = {name: statistics.median(v) for name, v in costs.items() if name not in (GATEWAY, REFERENCE)}
    cheapest = min(libraries, key=libraries.__getitem__)
    ratios = [
        g / c for g, c in zip(costs[GATEWAY], costs[cheapest], strict=True)
    ]  # the same round, one after the other
    verdict = Verdict(ratios, GOAL, at_most=True)
    gateway = statistics.median(costs[GATEWAY])
    out.ours = f"gateway's client {gateway:.0f} µs CPU/req"
    out.reference = f"cheapest library client: {cheapest} {libraries[cheapest]:.0f} µs"
    out.ratio = verdict.median
    out.ratio_of = "gateway client / cheapest library client, CPU µs/req (median of per-round ratios)"
    out.rounds = verdict.describe("{:.2f}x")
    out.judge(verdict.met)
    out.notes.append(
        "Client process CPU µs per request (median of the rounds, min-max): "
        + "; ".join(
            f"{name} {statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" for name, v in costs.items()
        )
        + f". {REFERENCE} is a sizing reference, not a candidate (no timeouts, no error mapping)."
    )
    if "httpx" not in results:
        out.notes.append("httpx is not installed (pip install -e '.[bench]'): not measured.")
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=13,
    title="HTTP clients for the upstream hop",
    goal=f"the gateway's client ≤ {GOAL:.2f}x the CPU/req of the cheapest library client",
    doc=f"""
The CPU time one client process (`python -m bench.clients`, uvloop) spends per answered request
on the gateway's upstream hop, {CONCURRENCY} requests in flight on a keep-alive pool against a
fixed server (`bench/floorapp.py`'s empty route on uvicorn, the services' server command: its cost
is the same for every client and not counted). Each client sends the headers the gateway sends (a
request id and a signed internal credential) and reads the whole answer as bytes. The clients, each
measured once per round in alternating order: {", ".join(available())}. `gateway (Upstream)` is
gateway/upstreams.py's own class (session, connector, timeouts, place semaphore, breaker); the
aiohttp variants take its parts away one by one (the wrapper, the socket timeouts, the gateway's
session options); httpx is configured with the gateway's pool and timeouts; the hand-written
reference (asyncio Protocol + httptools' parser, no timeouts) only sizes what replacing the library
could save. The goal is met when the gateway's client costs at most {GOAL:.2f}x the cheapest library
client, at the median of the per-round ratios.
""",
    needs=(),
)
