"""The benchmark harness's plumbing on a tiny scale: it starts the real system, measures one scenario
with wrk and writes a complete report. Speed is never asserted (benchmarks are not tests)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tools
from bench.report import RUN_COLUMNS, SUMMARY_COLUMNS
from devtools.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def _header(columns: tuple[str, ...]) -> str:
    return "| " + " | ".join(columns) + " |"


def _rows(text: str, section: str) -> list[list[str]]:
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("| ")][2:]  # past header and rule
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]


def test_a_quick_run_writes_a_complete_report(tmp_path: Path) -> None:
    """Run with two uvicorn workers per service: their CPU must be counted, not only the parent's."""
    report = tmp_path / "REPORT.md"
    cmd = [sys.executable, "-m", "bench", "--only", "2", "--db", "sqlite", "--duration", "1", "--warmup", "0"]
    cmd += ["--workers", "2"]
    result = subprocess.run(
        [*cmd, "--quick", "--output", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()

    for label in ("Date", "Reproduce", "Machine", "Versions", "Method"):
        assert f"- **{label}:**" in text
    assert "python -m bench --only 2 --db sqlite" in text
    assert "(2 uvicorn workers each," in text
    assert re.search(r"litestar \d", text)
    assert re.search(r"redis-server \d", text)

    assert _header(SUMMARY_COLUMNS) in text
    (summary,) = _rows(text, "Results")
    assert len(summary) == len(SUMMARY_COLUMNS)
    assert summary[:3] == ["2", "Gateway overhead", "sqlite"]
    if tools.find("wrk") is None:
        assert summary[-1] == "**SKIP**"
        return
    assert summary[-1] in ("**PASS**", "**MISS**")
    assert re.fullmatch(r"\d+\.\d\dx \(gateway / direct req/s, median round\)", summary[5])

    assert _header(RUN_COLUMNS) in text
    runs = _rows(text, "Raw figures")
    assert [r[2] for r in runs] == ["gateway", "canvas service direct"]
    for run in runs:
        assert len(run) == len(RUN_COLUMNS)
        assert int(run[5].replace(",", "")) > 0  # requests answered
        assert run[10] == "0"  # no failed request
        assert re.search(r"\bcanvas \d+\.\d\d\b", run[12])  # the workers' CPU, the parent has next to none
