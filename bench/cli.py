"""`python -m bench`: run the scenarios on each database and write the report.

python -m bench                                   # everything, as `make bench` (≤ ~20 min)
python -m bench --only 1,2 --db sqlite --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench import machine, tools
from bench.api import Api
from bench.context import Context, Fixtures, Options
from bench.databases import ADMIN_URL, RawDB, postgres_version
from bench.profile import sampling
from bench.report import ERROR, SKIP, Outcome, ratio, render
from bench.scenarios import ALL
from bench.scenarios.base import Scenario
from bench.system import System
from devtools.processes import ROOT

DEFAULT_REPORT = ROOT / "bench" / "REPORT.md"
RESULTS = ROOT / "bench" / "results"
FINDINGS = ROOT / "bench" / "FINDINGS.md"  # hand-written: what the profiles of missed goals show
DEFAULT_ROUNDS = 5  # issue 18: a verdict from one or two runs flipped with the machine's noise
MAX_DURATION = 30.0  # a direct call's credential must outlive one wrk run (bench/system.py)


def _numbers(text: str) -> list[int]:
    chosen = sorted({int(x) for x in text.split(",") if x.strip()})
    known = {s.number for s in ALL}
    if not chosen or not set(chosen) <= known:
        raise argparse.ArgumentTypeError(f"scenarios are {sorted(known)}")
    return chosen


def _dbs(text: str) -> list[str]:
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    if not chosen or not set(chosen) <= {"sqlite", "postgres"}:
        raise argparse.ArgumentTypeError("databases are sqlite and postgres")
    return list(dict.fromkeys(chosen))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", type=_numbers, default=[s.number for s in ALL], help="scenarios, e.g. 1,2")
    parser.add_argument("--db", type=_dbs, default=["sqlite", "postgres"], help="sqlite,postgres")
    parser.add_argument(
        "--duration", type=float, default=5.0, help=f"seconds per measured run (≤ {MAX_DURATION:.0f})"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds of warm-up load (default 3, 1 with --quick)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"measured rounds per side, alternating; the median counts (default {DEFAULT_ROUNDS}, "
        "1 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="about a tenth of the data and request counts")
    parser.add_argument("--profile", action="store_true", help="py-spy the processes of a missed goal")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        choices=range(1, 9),
        metavar="N",
        help="uvicorn processes per service and per reference app (default 1; docker-compose runs 2)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_REPORT, help="where the report goes")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.command = " ".join(["python -m bench", *map(shlex.quote, argv)])
    if not 0 < args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in (0, {MAX_DURATION:.0f}]")
    if args.warmup is None:
        args.warmup = 1.0 if args.quick else 3.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else DEFAULT_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


async def _fixtures(api: Api) -> Fixtures:
    reader = await api.signup("reader")
    private = await api.create_canvas(reader, public=False, title="Private canvas")
    public = await api.create_canvas(reader, public=True, title="Public canvas")
    return Fixtures(reader=reader, private_canvas=private, public_canvas=public)


async def _scenario(ctx: Context, scenario: Scenario) -> Outcome:
    out = Outcome(scenario.number, scenario.title, ctx.db, scenario.goal)
    missing = ctx.tools.why_missing(*scenario.needs)
    if missing:
        out.notes.append(f"Skipped: {missing}.")
        return out
    started = time.monotonic()
    print(f"[{ctx.db}] {scenario.number}. {scenario.title} ...", flush=True)
    profiled = scenario.profiled if ctx.options.profile else ()
    try:
        async with sampling(ctx, profiled, out):
            await scenario.run(ctx, out)
    except Exception as exc:
        out.status = ERROR
        out.notes.append(f"Failed: {type(exc).__name__}: {str(exc)[:500]} (logs: {ctx.system.log_dir})")
        traceback.print_exc()
    took = time.monotonic() - started
    print(f"[{ctx.db}] {scenario.number}. {out.status} {ratio(out.ratio)} ({took:.0f} s)", flush=True)
    return out


async def _on(
    db: str, scenarios: list[Scenario], options: Options, found: tools.Tools, run_dir: Path
) -> list[Outcome]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"cv-bench-{db}-"))
    system = System(db, data_dir, run_dir / db / "logs", workers=options.workers)
    workdir = run_dir / db / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        await system.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
            api = Api(http, system.url("gateway"))
            canvas_db = await RawDB(system.canvas_db_url).open()
            try:
                ctx = Context(db, options, system, api, found, await _fixtures(api), canvas_db, workdir)
                return [await _scenario(ctx, s) for s in scenarios]
            finally:
                await canvas_db.close()
    finally:
        await system.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _not_run(db: str, scenarios: list[Scenario], status: str, why: str) -> list[Outcome]:
    return [Outcome(s.number, s.title, db, s.goal, status=status, notes=[why]) for s in scenarios]


def _busy_machine_notes(load_before: str) -> list[str]:
    busiest = max(float(x) for x in load_before.split(" / ")) if "/" in load_before else 0.0
    if busiest <= (os.cpu_count() or 1) / 2:
        return []
    return [
        f"The machine was already busy when the run began (load average {load_before} on {os.cpu_count()} "
        "CPUs: other work shares the cores). Absolute figures are then lower and noisier than on an idle "
        "machine; the ratios, measured side by side, and the CPU ms per request hold up better."
    ]


def _header(
    command: str,
    options: Options,
    *,
    began: datetime,
    load_before: str,
    versions: list[str],
    run_dir: Path,
) -> list[str]:
    minutes = (datetime.now(UTC) - began).total_seconds() / 60
    analysis = [f"- **Analysis of the missed goals** (profiles, fixes): `{FINDINGS.relative_to(ROOT)}`."]
    rounds = (
        f"{options.rounds} rounds per side in alternating order (A B, B A, ...); the median round's "
        "figures are shown with the spread over the rounds (min-max), CPU ms/req as each process's "
        "median over the rounds, a ratio as the median of the per-round ratios; a goal is met only at "
        "the median, and the Rounds column says how far the worst round was from it"
    )
    return [
        f"- **Date:** {began:%Y-%m-%d %H:%M} UTC; the run took {minutes:.1f} min.",
        f"- **Reproduce:** `{command}` (`make bench` runs everything with the defaults).",
        f"- **Machine:** {machine.machine()}; load average (1/5/15 min) {load_before} before the run, "
        f"{machine.load_average()} after.",
        f"- **Versions:** {', '.join(versions)}.",
        *(analysis if FINDINGS.exists() else []),
        "- **Method:** every process on this machine, on loopback: Redis, the databases, the auth service, "
        "the relay, the canvas service and the gateway ("
        + ("one uvicorn process each" if options.workers == 1 else f"{options.workers} uvicorn workers each")
        + ", uvloop + httptools, "
        "LOG_LEVEL=WARNING, the gateway's rate limiter on with a limit no client reaches), and the load "
        "generator (wrk, 1 thread; all of them in one session, so one scheduling group). "
        f"Each measured run lasts {options.duration:g} s after "
        f"{options.warmup:g} s of the same load; "
        + (rounds if options.rounds > 1 else "one round per side")
        + ". Latencies are wrk's (closed loop). CPU ms/req: CPU time each process spent during the run "
        "(from /proc) per answered request; `postgres` is the server processes serving our databases. Sizes: "
        + ("--quick (about a tenth)." if options.quick else "as issue 6 states them.")
        + f" Raw wrk output and logs: `{run_dir.relative_to(ROOT)}` (not committed).",
    ]


async def run(args: argparse.Namespace) -> int:
    began = datetime.now(UTC)
    load_before = machine.load_average()
    options = Options(
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        quick=args.quick,
        profile=args.profile,
        workers=args.workers,
    )
    scenarios = [s for s in ALL if s.number in args.only]
    found = tools.ensure(tuple(sorted({p for s in scenarios for p in s.needs})))
    run_dir = RESULTS / began.strftime("%Y%m%d-%H%M%S")
    pg_version = await postgres_version() if "postgres" in args.db else None
    notes = _busy_machine_notes(load_before)
    outcomes: list[Outcome] = []
    for db in args.db:
        if db == "postgres" and pg_version is None:
            notes.append(f"PostgreSQL not reachable at {ADMIN_URL}: its runs were skipped.")
            outcomes += _not_run(db, scenarios, SKIP, "Skipped: PostgreSQL not reachable.")
            continue
        try:
            outcomes += await _on(db, scenarios, options, found, run_dir)
        except Exception as exc:
            traceback.print_exc()
            outcomes += _not_run(
                db, scenarios, ERROR, f"The system did not start: {type(exc).__name__}: {exc}"
            )
    outcomes.sort(key=lambda o: (o.number, args.db.index(o.db)))
    versions = machine.versions(
        redis_server=shutil.which("redis-server") or "redis-server",
        postgres=pg_version,
        wrk=found.path("wrk"),
        nginx=found.path("nginx"),
    )
    header = _header(
        args.command, options, began=began, load_before=load_before, versions=versions, run_dir=run_dir
    )
    docs = {s.number: s.doc for s in ALL}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(outcomes=outcomes, header=header, scenario_docs=docs, general_notes=notes))
    print(f"report written to {args.output}", flush=True)
    return 0


async def _interruptible(args: argparse.Namespace) -> int:
    """SIGTERM/SIGINT cancel the run, so that every started process is still stopped on the way out."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await run(args)
    except asyncio.CancelledError:
        print("interrupted: the processes were stopped, no report written", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_interruptible(parse_args(argv)))
