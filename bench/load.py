"""Measuring several targets under the same load, side by side in one run.

With several rounds, each target is measured once per round, in alternating order (A B, B A, ...):
whatever else the machine does then weighs on every side alike. A target's figures are its median
round's (throughput) and the median over the rounds of each process's CPU ms per request; the
rounds themselves stay on the Run, so the report can show the spread and the worst round.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench import cpu, wrk
from bench.context import Context
from bench.report import Outcome, Run, Verdict


@dataclass(frozen=True)
class Target:
    label: str
    base_url: str
    # Built anew for every wrk run: a direct call's internal credential expires within seconds.
    requests: Callable[[], Sequence[wrk.Request]]
    env: Mapping[str, str] | None = None  # wrk's environment (bench/bind_source.py: other addresses)


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
        env=target.env,
    )
    if not run.overlapped:
        watched |= await ctx.system.watched()  # PostgreSQL backends that connected during the run
        run.cpu_ms = cpu.per_request_ms(before, cpu.snapshot(watched), run.requests)
    return run


async def warm(ctx: Context, target: Target, connections: int) -> None:
    if ctx.options.warmup > 0:
        await measure(ctx, target, connections, seconds=ctx.options.warmup)


async def side_by_side(ctx: Context, targets: Sequence[Target], connections: int) -> list[Run]:
    """Warm each target, then measure each once per round; the order alternates (A B, B A, ...).
    Each target's Run is its median (see `median_run`), with every round in `Run.rounds`."""
    for target in targets:
        await warm(ctx, target, connections)
    runs: dict[str, list[Run]] = {t.label: [] for t in targets}
    for round_no in range(ctx.options.rounds):
        order = targets if round_no % 2 == 0 else list(reversed(targets))
        for target in order:
            runs[target.label].append(await measure(ctx, target, connections))
    return [median_run(runs[t.label]) for t in targets]


def median_run(runs: list[Run]) -> Run:
    """The run with the (lower) median throughput, its CPU ms per request replaced by each process's
    median over the rounds that measured it, and every round kept in `rounds`."""
    if len(runs) == 1:
        return runs[0]
    middle = statistics.median_low([r.rps for r in runs])
    chosen = next(r for r in runs if r.rps == middle)
    costs: dict[str, list[float]] = {}
    for r in runs:
        for name, value in r.cpu_ms.items():
            costs.setdefault(name, []).append(value)
    return dataclasses.replace(
        chosen,
        cpu_ms={name: statistics.median(values) for name, values in costs.items()},
        rounds=list(runs),
    )


def round_ratios(ours: Run, reference: Run) -> list[float]:
    """ours / reference req/s in each round (measured in the same round, one after the other)."""
    pairs = zip(ours.rounds or [ours], reference.rounds or [reference], strict=True)
    return [a.rps / b.rps if b.rps else 0.0 for a, b in pairs]


def cpu_rounds(run: Run, process: str) -> list[float]:
    """A process's CPU ms per request in each round that measured it."""
    return [r.cpu_ms[process] for r in run.rounds or [run] if process in r.cpu_ms]


def judge_ratio(out: Outcome, ours: Run, reference: Run, goal: float, *, at_most: bool = False) -> bool:
    """Set the outcome's ratio to the median of the per-round ratios and its rounds column to their
    spread and the worst round's distance from `goal`; whether the median meets it."""
    verdict = Verdict(round_ratios(ours, reference), goal, at_most=at_most)
    out.ratio = verdict.median
    out.rounds = verdict.describe("{:.2f}x")
    return verdict.met
