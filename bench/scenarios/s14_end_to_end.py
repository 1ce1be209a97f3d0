"""14. End to end against e078198: an authenticated read of a public canvas through the gateway, the whole
system (compose's worker counts) as it is now against the same system at commit e078198, in the same run."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

import aiohttp

from bench import httpgen, wrk
from bench.api import Account, Api
from bench.context import Context
from bench.load import Target, judge_ratio, measure, median_run
from bench.report import Outcome, Run, rps
from bench.scenarios.base import Scenario, check_errors
from bench.system import DEPLOYED_WORKERS, START_ORDER, System
from devtools.processes import HTTP_PROTOCOL, ROOT, Process
from devtools.redis_server import RedisServer

OLD_COMMIT = "e078198"
CONNECTIONS = 64
GOAL_RATIO = 2.0
WORKERS = DEPLOYED_WORKERS  # docker-compose.yml's AUTH_WORKERS / CANVAS_WORKERS / GATEWAY_WORKERS defaults
EXACT_READS = 2_000  # reads through each gateway, every one awaited, for the exact-count check


class OldSystem(System):
    """The system at another commit, checked out in `tree`: its own code (on PYTHONPATH, with the current
    directory left off sys.path), this checkout's virtualenv, its own migrations, and its own uvicorn
    flags (e078198's compose file serves with plain `--http httptools`: no shared.server protocol)."""

    def __init__(self, tree: Path, db: str, data_dir: Path, log_dir: Path, *, workers: int) -> None:
        super().__init__(db, data_dir, log_dir, workers=workers)
        self.tree = tree

    def _environment(self, redis_url: str) -> dict[str, str]:
        return super()._environment(redis_url) | {"PYTHONPATH": str(self.tree), "PYTHONSAFEPATH": "1"}

    def _process(self, name: str) -> Process:
        proc = super()._process(name)
        if HTTP_PROTOCOL in proc.cmd:
            proc.cmd[proc.cmd.index(HTTP_PROTOCOL)] = "httptools"
            # uvicorn puts its --app-dir (default: the current directory, this checkout) first on sys.path
            proc.cmd += ["--app-dir", str(self.tree)]
        return proc

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.data_dir / "redis", appendonly=False).start()
        await self.databases.create()
        self.env = self._environment(self.redis.url)
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "devtools.migrate"],  # the old commit's migrations, from its tree
            env={**os.environ, **self.env},
            cwd=self.tree,
            check=True,
            capture_output=True,
        )
        for name in START_ORDER:
            await self.start_process(name)


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False)


def why_unreachable() -> str | None:
    """Why the old commit cannot be checked out here (no git, not a repository, a shallow clone)."""
    if shutil.which("git") is None:
        return "git is not installed"
    found = _git("cat-file", "-e", f"{OLD_COMMIT}^{{commit}}")
    if found.returncode != 0:
        shallow = _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        return f"commit {OLD_COMMIT} is not in this checkout" + (
            " (a shallow clone: `git fetch --unshallow` brings it)" if shallow else ""
        )
    return None


@asynccontextmanager
async def old_tree() -> AsyncIterator[Path]:
    """A detached worktree at the old commit in a temporary folder, removed afterwards (also on failure)."""
    parent = Path(tempfile.mkdtemp(prefix="cv-bench-old-"))
    tree = parent / "tree"
    added = _git("worktree", "add", "--detach", str(tree), OLD_COMMIT)
    try:
        if added.returncode != 0:
            raise RuntimeError(f"git worktree add failed: {added.stderr.strip()[:300]}")
        yield tree
    finally:
        _git("worktree", "remove", "--force", str(tree))
        _git("worktree", "prune")
        shutil.rmtree(parent, ignore_errors=True)


class _Pair:
    """What `bench.load.measure` asks of a system: the processes to watch, here both systems' ("new
    gateway", "old gateway", ...), so every run shows both sides' CPU (the idle side's is ~0)."""

    def __init__(self, systems: dict[str, System]) -> None:
        self.systems = systems

    async def watched(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for side, system in self.systems.items():
            found |= {f"{side} {name}": pids for name, pids in (await system.watched()).items()}
        return found


@dataclasses.dataclass
class Side:
    name: str  # "new" or "old"
    system: System
    api: Api
    reader: Account
    canvas: str

    @property
    def path(self) -> str:
        return f"/api/canvases/{self.canvas}"

    async def views(self) -> int:
        """The count as the API shows it: a read's `views` counts every read so far, this one included."""
        data = await self.api.get(self.path, headers=self.reader.bearer)
        return int(data["views"])


async def _which_code(out: Outcome, sides: list[Side], http: aiohttp.ClientSession) -> None:
    """Evidence that each side runs its own code: the checks each auth service's /ready makes (this
    checkout's also checks that its migrations are applied, which e078198's database lacks)."""
    for side in sides:
        async with http.get(side.system.url("auth") + "/ready") as resp:
            checks = (await resp.json()).get("checks")
        out.notes.append(f"{side.name} auth service /ready: {resp.status}, checks {checks}.")


async def _side(name: str, system: System, http: aiohttp.ClientSession) -> Side:
    api = Api(http, system.url("gateway"))
    reader = await api.signup(f"e2e-{name}")
    canvas = await api.create_canvas(reader, public=True, title=f"Public canvas ({name})")
    return Side(name, system, api, reader, canvas)


def _answered(runs: list[Run]) -> int:
    """wrk's count of 2xx answers: its requests less the non-2xx/3xx ones and the failed (errors)."""
    return sum(r.requests - r.errors for r in runs)


async def _views_check(ctx: Context, side: Side, before: int, runs: list[Run], out: Outcome) -> bool:
    """After the wrk rounds: the count against wrk's 2xx, then an exact check (every read awaited)."""
    after = await side.views()
    counted, answered = after - before - 1, _answered(runs)
    extra = counted - answered
    out.notes.append(
        f"{side.name} views after the wrk runs: {before:,} -> {after:,}, so {counted:,} reads counted; wrk "
        f"counted {answered:,} 2xx in {len(runs)} runs; difference {extra:+,} (wrk stops at its deadline "
        f"with up to {CONNECTIONS} reads per run sent but not read, which the server still answers and "
        f"counts: at most {CONNECTIONS * len(runs):,} here)."
    )
    wrk_ok = 0 <= extra <= CONNECTIONS * len(runs)
    run, statuses = await httpgen.fixed_count(
        f"{side.name}: exact-count reads (gateway)",
        side.system.url("gateway") + side.path,
        total=EXACT_READS,
        connections=CONNECTIONS,
        headers=lambda: dict(side.reader.bearer),
    )
    out.runs.append(run)
    final = await side.views()
    expected = after + statuses[200] + 1
    exact = final == expected
    out.notes.append(
        f"{side.name} exact count: {statuses[200]:,} awaited reads through the gateway (statuses "
        f"{dict(statuses)}) took `views` from {after:,} to {final:,}, expected {expected:,}: "
        + ("exact." if exact else "NOT EXACT.")
    )
    return exact and wrk_ok


def _target(side: Side) -> Target:
    request = wrk.Request(side.path, headers=side.reader.bearer)
    return Target(
        f"{side.name}: GET public canvas via gateway (Bearer)", side.system.url("gateway"), lambda: [request]
    )


async def _compare(ctx: Context, out: Outcome, sides: list[Side]) -> None:
    pair = dataclasses.replace(ctx, system=cast("System", _Pair({s.name: s.system for s in sides})))
    targets = {s.name: _target(s) for s in sides}
    all_runs: dict[str, list[Run]] = {s.name: [] for s in sides}
    before = {s.name: await s.views() for s in sides}
    for s in sides:  # warm-up counts views too, so it is among the runs the check adds up
        if ctx.options.warmup > 0:
            all_runs[s.name].append(
                await measure(pair, targets[s.name], CONNECTIONS, seconds=ctx.options.warmup)
            )
    rounds: dict[str, list[Run]] = {s.name: [] for s in sides}
    for round_no in range(ctx.options.rounds):
        order = sides if round_no % 2 == 0 else list(reversed(sides))
        for s in order:
            run = await measure(pair, targets[s.name], CONNECTIONS)
            rounds[s.name].append(run)
            all_runs[s.name].append(run)
    new, old = (median_run(rounds[name]) for name in ("new", "old"))
    out.runs = [new, old]
    out.ours, out.reference = rps(new), rps(old)
    out.ratio_of = f"now / {OLD_COMMIT} req/s, median round"
    fast_enough = judge_ratio(out, new, old, GOAL_RATIO)
    exact = {s.name: await _views_check(ctx, s, before[s.name], all_runs[s.name], out) for s in sides}
    for side, label, run in (("new", "now", new), ("old", OLD_COMMIT, old)):
        own = {k.split(" ", 1)[1]: v for k, v in run.cpu_ms.items() if k.startswith(f"{side} ")}
        shown = ", ".join(f"{name} {value:.2f}" for name, value in sorted(own.items(), key=lambda kv: -kv[1]))
        out.notes.append(f"{label}: CPU {sum(own.values()):.2f} ms per read over its processes ({shown}).")
    out.judge(fast_enough and exact["new"])
    check_errors(out)


async def run(ctx: Context, out: Outcome) -> None:
    why = why_unreachable()
    if why is not None:
        out.notes.append(f"Skipped: {why}; this scenario builds {OLD_COMMIT} in a temporary worktree.")
        return
    data = Path(tempfile.mkdtemp(prefix="cv-bench-e2e-"))
    logs = ctx.system.log_dir.parent / "s14"
    systems: list[System] = []
    try:
        async with old_tree() as tree:
            new = System(ctx.db, data / "new", logs / "new", workers=WORKERS)
            old = OldSystem(tree, ctx.db, data / "old", logs / "old", workers=WORKERS)
            for system in (new, old):
                systems.append(system)
                await system.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                sides = [await _side("new", new, http), await _side("old", old, http)]
                await _which_code(out, sides, http)
                await _compare(ctx, out, sides)
            for system in reversed(systems):
                await system.stop()
            systems = []
    finally:
        for system in reversed(systems):
            await system.stop()
        shutil.rmtree(data, ignore_errors=True)


SCENARIO = Scenario(
    run=run,
    number=14,
    title=f"End to end against {OLD_COMMIT}",
    goal=f"≥ {GOAL_RATIO:g}x {OLD_COMMIT}'s req/s; exact views",
    doc=f"""
Issue 18's goal 2. Two whole systems side by side in the same run, each with its own Redis server, its
own fresh databases (SQLite files, or new PostgreSQL databases with `--db postgres`), its own ports, and
docker-compose.yml's worker counts ({WORKERS} uvicorn workers for the auth service, the canvas service
and the gateway; one relay): the current checkout, and commit {OLD_COMMIT} checked out by `git worktree
add --detach` in a temporary folder (removed afterwards), run from this checkout's virtualenv (its
dependency pins are a subset of today's) with its own code first on the path, its own migrations and
its own uvicorn flags (`--http httptools`). The environment is the harness's (the rate limiter on with
a limit no client reaches). On each, a user signs up, creates a public canvas and reads it through the
gateway with its Bearer token: wrk at {CONNECTIONS} connections, warm-up then rounds in alternating
order. Ratio: now / {OLD_COMMIT} req/s (median of the per-round ratios). Views: the canvas's `views`
as `GET /api/canvases/{{id}}` returns it (it counts every read, that one included) before and after the
wrk runs, against wrk's count of 2xx (the server also counts the reads wrk sent but stopped waiting for
at its deadline, at most {CONNECTIONS} per run); then {EXACT_READS:,} reads, every one awaited, must add
exactly that many. The goal needs the ratio at the median and exact views on the current system.
Skipped, with the reason, where {OLD_COMMIT} is not in the checkout (a shallow clone).
""",
    profiled=(),
)
