"""Measuring several targets under the same load, side by side in one run."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import cpu, wrk
from bench.context import Context
from bench.report import Run


@dataclass(frozen=True)
class Target:
    label: str
    base_url: str
    # Built anew for every wrk run: a direct call's internal credential expires within seconds.
    requests: Callable[[], Sequence[wrk.Request]]


async def measure(ctx: Context, target: Target, connections: int, *, seconds: float | None = None) -> Run:
    """One wrk run, with the CPU time each watched process spent per answered request."""
    watched = await ctx.system.watched()
    before = cpu.snapshot(watched)
    run = await wrk.run(
        target.label,
        target.base_url,
        target.requests(),
        connections=connections,
        seconds=seconds or ctx.options.duration,
        workdir=ctx.workdir,
    )
    if not run.overlapped:
        watched |= await ctx.system.watched()  # PostgreSQL backends that connected during the run
        run.cpu_ms = cpu.per_request_ms(before, cpu.snapshot(watched), run.requests)
    return run


async def warm(ctx: Context, target: Target, connections: int) -> None:
    if ctx.options.warmup > 0:
        await measure(ctx, target, connections, seconds=ctx.options.warmup)


async def side_by_side(ctx: Context, targets: Sequence[Target], connections: int) -> list[Run]:
    """Warm each target, then measure each; with several rounds the order alternates (A B, B A, ...)
    and the run with the (lower) median throughput stands for its target."""
    for target in targets:
        await warm(ctx, target, connections)
    runs: dict[str, list[Run]] = {t.label: [] for t in targets}
    for round_no in range(ctx.options.rounds):
        order = targets if round_no % 2 == 0 else list(reversed(targets))
        for target in order:
            runs[target.label].append(await measure(ctx, target, connections))
    return [_median(runs[t.label]) for t in targets]


def _median(runs: list[Run]) -> Run:
    if len(runs) == 1:
        return runs[0]
    middle = statistics.median_low([r.rps for r in runs])
    return next(r for r in runs if r.rps == middle)
