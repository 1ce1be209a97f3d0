"""What a scenario measured (Run, Outcome) and the markdown report built from it."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

PASS, MISS, SKIP, ERROR = "PASS", "MISS", "SKIP", "ERROR"

SUMMARY_COLUMNS = ("#", "Scenario", "DB", "Ours", "Reference", "Ratio", "Goal", "Rounds", "Result")
RUN_COLUMNS = (
    "#",
    "DB",
    "Run",
    "Generator",
    "Conns",
    "Requests",
    "Seconds",
    "req/s",
    "p50 ms",
    "p99 ms",
    "Errors",
    "Gen CPU",
    "CPU ms/req by process",
)


@dataclass
class Run:
    """One load run's raw figures (latencies as the load generator saw them)."""

    label: str
    target: str
    generator: str
    connections: int
    requests: int
    seconds: float
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    generator_cpu: float | None = None  # the load generator's CPU time / wall time (1.0 = one core)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per request, by process
    overlapped: bool = False  # ran at the same time as another load run: CPU figures not its own
    rounds: list[Run] = field(default_factory=list)  # when it stands for several rounds: all of them

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 1.0


@dataclass
class Outcome:
    """One scenario on one database: the headline ratio against its reference, and every run behind it."""

    number: int
    title: str
    db: str
    goal: str
    status: str = SKIP
    ours: str = "-"
    reference: str = "-"
    ratio: float | None = None
    ratio_of: str = ""  # what the ratio divides, e.g. "ours / nginx req/s"
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rounds: str = "-"  # the spread over the rounds and how far the worst one was from the goal

    def judge(self, ok: bool) -> None:
        self.status = PASS if ok else MISS


@dataclass(frozen=True)
class Verdict:
    """A goal judged on the median of per-round values; the spread and the worst round are kept."""

    values: list[float]
    goal: float
    at_most: bool  # the goal is a ceiling (a cost), else a floor (a ratio to reach)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool:
        return self.median <= self.goal if self.at_most else self.median >= self.goal

    @property
    def worst(self) -> float:
        return max(self.values) if self.at_most else min(self.values)

    def describe(self, fmt: str = "{:.2f}") -> str:
        """`n rounds min-max; worst round 12% short of the goal` (or `within it`)."""
        low, high = fmt.format(min(self.values)), fmt.format(max(self.values))
        miss = (self.worst - self.goal) / self.goal * (1 if self.at_most else -1)
        where = (
            "within the goal"
            if miss <= 0
            else f"{miss:.0%} {'over' if self.at_most else 'short of'} the goal"
        )
        return f"{len(self.values)} rounds {low}-{high}; worst round {fmt.format(self.worst)}, {where}"


def rps(run: Run) -> str:
    return f"{run.rps:,.0f} req/s"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def cpu_costs(run: Run) -> str:
    """Each process's CPU ms per request, costliest first; with rounds, the median (min-max)."""
    shown = sorted(((ms, name) for name, ms in run.cpu_ms.items() if ms >= 0.005), reverse=True)
    parts = []
    for value, name in shown:
        spread = [r.cpu_ms[name] for r in run.rounds if name in r.cpu_ms]
        extra = f" ({min(spread):.2f}-{max(spread):.2f})" if len(spread) > 1 else ""
        parts.append(f"{name} {value:.2f}{extra}")
    return ", ".join(parts) or "-"


def rps_spread(run: Run) -> str:
    if len(run.rounds) < 2:
        return f"{run.rps:,.0f}"
    values = [r.rps for r in run.rounds]
    return f"{run.rps:,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_row(columns), _row(["---"] * len(columns)), *(_row(r) for r in rows)]


def summary_table(outcomes: Sequence[Outcome]) -> list[str]:
    rows = []
    for o in outcomes:
        shown = ratio(o.ratio) + (f" ({o.ratio_of})" if o.ratio is not None and o.ratio_of else "")
        rows.append(
            [o.number, o.title, o.db, o.ours, o.reference, shown, o.goal, o.rounds, f"**{o.status}**"]
        )
    return _table(SUMMARY_COLUMNS, rows)


def runs_table(outcomes: Sequence[Outcome]) -> list[str]:
    rows = []
    for o in outcomes:
        for r in o.runs:
            rows.append(
                [
                    o.number,
                    o.db,
                    r.label,
                    r.generator,
                    r.connections,
                    f"{r.requests:,}",
                    f"{r.seconds:.1f}",
                    rps_spread(r),
                    ms(r.p50_ms),
                    ms(r.p99_ms),
                    r.errors,
                    "-" if r.generator_cpu is None else f"{r.generator_cpu:.0%}",
                    cpu_costs(r),
                ]
            )
    return _table(RUN_COLUMNS, rows)


def render(
    *,
    outcomes: Sequence[Outcome],
    header: Sequence[str],
    scenario_docs: dict[int, str],
    general_notes: Sequence[str],
) -> str:
    lines = ["# Canvas-Verse benchmark report", "", *header, "", "## Results", ""]
    lines += summary_table(outcomes)
    lines += ["", "## Raw figures", ""]
    lines += runs_table(outcomes)
    lines += ["", "## Scenarios", ""]
    for number in sorted({o.number for o in outcomes}):
        mine = [o for o in outcomes if o.number == number]
        lines += [f"### {number}. {mine[0].title}", "", scenario_docs.get(number, "").strip(), ""]
        for o in mine:
            for note in o.notes:
                lines.append(f"- {o.db}: {note}")
        lines.append("")
    if general_notes:
        lines += ["## Notes", "", *(f"- {n}" for n in general_notes), ""]
    return "\n".join(lines).rstrip() + "\n"
