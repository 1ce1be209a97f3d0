"""What every scenario gets: the options, the running system, its API, shared fixtures, the tools."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.api import Account, Api
from bench.databases import RawDB
from bench.system import System
from bench.tools import Tools


@dataclass(frozen=True)
class Scale:
    """Data sizes and request counts: issue 6's by default, about a tenth with --quick."""

    deep_total: int = 100_000  # scenario 5: canvases in the listing
    deep_after: int = 10_000  # scenario 5: the deep page starts after this many items
    cascade_sizes: tuple[int, ...] = (1_000, 10_000)  # scenario 6
    memory_checkpoints: tuple[int, int] = (10_000, 100_000)  # scenario 8
    exact_reads: int = 10_000  # scenario 4: reads whose count is checked exactly


QUICK = Scale(
    deep_total=10_000,
    deep_after=1_000,
    cascade_sizes=(100, 1_000),
    memory_checkpoints=(2_000, 20_000),
    exact_reads=3_000,
)


@dataclass(frozen=True)
class Options:
    duration: float = 5.0  # seconds per measured run
    warmup: float = 3.0  # seconds of the same load before each measured run
    rounds: int = 5  # measured rounds per side (alternating order); the median counts
    quick: bool = False
    profile: bool = False  # py-spy the system's processes where a goal is missed
    workers: int = 1  # uvicorn processes per service and per reference app

    @property
    def scale(self) -> Scale:
        return QUICK if self.quick else Scale()


@dataclass
class Fixtures:
    """Made once per system through the public API: a signed-up reader and two of their canvases."""

    reader: Account
    private_canvas: str
    public_canvas: str


@dataclass
class Context:
    db: str
    options: Options
    system: System
    api: Api
    tools: Tools
    fixtures: Fixtures
    canvas_db: RawDB  # the canvas service's database, through the bare driver
    workdir: Path  # wrk scripts and outputs, nginx config, profiles
