"""8. Memory: every process's RSS after 100,000 requests against after 10,000, from a fresh start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench import cpu, wrk
from bench.context import Context
from bench.load import Target
from bench.report import Outcome
from bench.scenarios.base import Scenario, check_errors

CONNECTIONS = 32
GOAL_RATIO = 1.2
PROCESSES = ("gateway", "auth", "canvas", "relay")
SETTLE = 1.0  # seconds after a phase before reading RSS


def rss_mib(pid: int) -> float:
    """RSS of the process and its workers (uvicorn --workers), in MiB."""
    return sum(_own_rss_mib(member) for member in cpu.family([pid]))


def _own_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _mix(ctx: Context) -> list[wrk.Request]:
    fx = ctx.fixtures
    bearer = fx.reader.bearer
    return [
        wrk.Request(f"/api/canvases/{fx.private_canvas}", headers=bearer),
        wrk.Request("/api/users/me", headers=bearer),
        wrk.Request("/api/canvases?limit=20"),
        wrk.Request(f"/api/canvases/{fx.public_canvas}"),
        wrk.Request("/api/users/me/canvases?limit=10", headers=bearer),
    ]


async def run(ctx: Context, out: Outcome) -> None:
    await ctx.system.restart(PROCESSES)
    mix = Target("request mix", ctx.system.url("gateway"), lambda: _mix(ctx))
    first_total, final_total = ctx.options.scale.memory_checkpoints
    snapshots: list[dict[str, float]] = []
    served = 0
    for label, total in (("first", first_total), ("then", final_total - first_total)):
        run = await wrk.run_count(
            f"{label} {total:,} requests",
            mix.base_url,
            mix.requests(),
            connections=CONNECTIONS,
            total=total,
            workdir=ctx.workdir,
        )
        out.runs.append(run)
        served += run.requests
        await asyncio.sleep(SETTLE)
        snapshots.append({name: rss_mib(ctx.system.pid(name)) for name in PROCESSES})
    early, late = snapshots
    growth = {name: late[name] / early[name] for name in PROCESSES}
    worst = max(growth, key=lambda n: growth[n])
    out.ours = f"{worst} {early[worst]:.0f} → {late[worst]:.0f} MiB"
    out.reference = f"after {out.runs[0].requests:,} requests"
    out.ratio, out.ratio_of = (
        growth[worst],
        f"RSS after {served:,} / after {out.runs[0].requests:,} ({worst})",
    )
    out.judge(all(g <= GOAL_RATIO for g in growth.values()))
    out.notes.append(
        "RSS per process, after the first phase → after all requests: "
        + "; ".join(f"{n} {early[n]:.1f} → {late[n]:.1f} MiB ({growth[n]:.2f}x)" for n in PROCESSES)
        + "."
    )
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=8,
    title="Memory",
    goal=f"every process's RSS ≤ {GOAL_RATIO}x its RSS after the first tenth",
    doc=f"""
The auth service, relay, canvas service and gateway are restarted, then wrk sends a mix through the
gateway at {CONNECTIONS} connections (a private canvas and `/api/users/me` with a Bearer token, the
public listing, a public canvas anonymously, the reader's own listing): 10,000 requests, then 90,000
more (2,000 and 18,000 with --quick), each phase made of back-to-back wrk runs until its count is
reached. The resident set size (VmRSS) of every process is read a second after each phase. Ratio:
the largest growth.
""",
    profiled=(),
)
