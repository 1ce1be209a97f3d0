"""`--profile`: sample the processes a scenario names with py-spy while it runs, and when its goal is
missed, put the hottest code into the report (self time overall, and the project's own functions by
inclusive time). py-spy is not a dependency: `.venv/bin/pip install py-spy` when you want this.
Sampling (100 Hz, non-blocking) costs some CPU, so a profiled run's figures are a little lower.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bench.context import Context
from bench.report import MISS, Outcome
from devtools.processes import ROOT

TOP = 8


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@asynccontextmanager
async def sampling(ctx: Context, names: tuple[str, ...], out: Outcome) -> AsyncIterator[None]:
    binary = py_spy()
    if binary is None or not names:
        if binary is None:
            out.notes.append("Not profiled: py-spy is not installed (`.venv/bin/pip install py-spy`).")
        yield
        return
    files = {name: ctx.workdir / f"profile-{out.number}-{name}.txt" for name in names}
    procs = [
        await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(ctx.system.pid(name)),
            "--rate",
            "100",
            "--nonblocking",
            "--full-filenames",
            "--format",
            "raw",
            "--output",
            str(files[name]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name in names
    ]
    try:
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
        await asyncio.gather(*(p.wait() for p in procs))
    if out.status == MISS:
        for name, path in files.items():
            if path.exists():
                out.notes.append(summary(name, path))


def _frame(raw: str) -> tuple[str, bool]:
    """`func (/abs/path/file.py:12)` -> (`file path:func`, whether it is the project's own code)."""
    func, _, where = raw.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    venv, root = f"{ROOT}/.venv/", f"{ROOT}/"
    ours = path.startswith(root) and not path.startswith(venv)
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        path = "stdlib/" + path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"{path.removeprefix(root)}:{func or raw}", ours


def summary(name: str, path: Path) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1][0]] += count
        for frame in {label for label, ours in frames if ours}:
            inclusive[frame] += count
    if not total:
        return f"Profile of {name}: no samples."
    hot = ", ".join(f"`{f}` {n / total:.0%}" for f, n in own.most_common(TOP))
    ours = ", ".join(f"`{f}` {n / total:.0%}" for f, n in inclusive.most_common(TOP))
    return f"Profile of {name} ({total:,} samples): self time {hot}. Project code, inclusive: {ours}."
