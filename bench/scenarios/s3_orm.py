"""3. ORM cost: the canvas service's get-by-id through Piccolo against the same query on the bare driver."""

from __future__ import annotations

import asyncio
import json
import sys

from bench.context import Context
from bench.report import Outcome, Run
from bench.scenarios.base import Scenario
from devtools.processes import ROOT

CONCURRENCY = 16
GOALS = {"sqlite": 0.6, "postgres": 0.7}
MARKER = "ORM_JSON "
LABELS = {
    "orm": "Piccolo, service engine",
    "raw": "bare driver",
    "stock": "Piccolo, stock SQLiteEngine (contrast)",
}


async def run(ctx: Context, out: Outcome) -> None:
    fx = ctx.fixtures
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.orm_probe",
        fx.private_canvas,
        fx.reader.user_id,
        str(ctx.options.duration),
        str(CONCURRENCY),
        env=ctx.system.processes["canvas"].env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await proc.communicate()
    text = stdout.decode(errors="replace")
    line = next((x for x in text.splitlines() if x.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"orm_probe failed ({proc.returncode}):\n{text[-2000:]}")
    found = json.loads(line.removeprefix(MARKER))
    runs = {
        name: Run(
            label=LABELS[name],
            target="in-process",
            generator="asyncio tasks",
            connections=CONCURRENCY,
            requests=int(r["operations"]),
            seconds=r["seconds"],
            p50_ms=r["p50_ms"],
            p99_ms=r["p99_ms"],
        )
        for name, r in found.items()
    }
    out.runs = list(runs.values())
    orm, raw = runs["orm"], runs["raw"]
    out.ours, out.reference = f"{orm.rps:,.0f} ops/s", f"{raw.rps:,.0f} ops/s"
    out.ratio, out.ratio_of = orm.rps / raw.rps, "Piccolo / bare driver ops/s"
    goal = GOALS[ctx.db]
    out.goal = f"≥ {goal}x bare driver ops/s"
    out.judge(out.ratio >= goal)
    if "stock" in runs:
        out.notes.append(
            f"Piccolo's stock SQLiteEngine reaches {runs['stock'].rps / raw.rps:.2f}x the bare driver."
        )


SCENARIO = Scenario(
    run=run,
    number=3,
    title="ORM cost",
    goal="≥ 0.6x (SQLite), ≥ 0.7x (PostgreSQL) bare driver ops/s",
    doc=f"""
In-process, {CONCURRENCY} concurrent asyncio tasks each: the canvas service's own get-by-id path
(`services/canvas/canvases.py:check_visible`: Piccolo select by id + visibility check) on the
service's engine (`shared/db.py`: persistent SQLite connections / the asyncpg pool, pool size from
the settings) against the same SELECT and check on one persistent aiosqlite connection or an asyncpg
pool of the same size (`bench/orm_probe.py`). Ratio: Piccolo ops/s / bare driver ops/s. On SQLite
Piccolo's stock engine (a new connection per query) is measured too, for contrast.
""",
    needs=(),
)
