"""What a scenario is, and the checks every scenario shares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.context import Context
from bench.report import ERROR, Outcome

ERROR_SHARE_LIMIT = 0.01  # a run with more failed requests than this says nothing about speed


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    goal: str
    doc: str  # what is measured against what, for the report
    run: Callable[[Context, Outcome], Awaitable[None]]
    needs: tuple[str, ...] = ("wrk",)  # external programs (bench/tools.py)
    profiled: tuple[str, ...] = ()  # processes worth a py-spy profile when the goal is missed


def check_errors(out: Outcome) -> None:
    """Note failed requests; too many of them make the outcome an ERROR, whatever the speed."""
    for run in out.runs:
        if run.errors:
            out.notes.append(f"{run.label}: {run.errors:,} failed requests ({run.error_share:.2%}).")
            if run.error_share > ERROR_SHARE_LIMIT:
                out.status = ERROR
