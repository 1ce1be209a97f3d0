"""Scenario 12 (ASGI servers) on a tiny scale: every installed server serves both apps and gets its
row in each app's table. Speed is never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import tools
from bench.scenarios.s12_servers import OURS, installed
from devtools.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


def test_scenario_12_measures_every_installed_server(tmp_path: Path) -> None:
    if tools.find("wrk") is None:
        pytest.skip("wrk is not installed")
    servers = [s.name for s in installed()]
    assert servers[0] == OURS
    report = tmp_path / "REPORT.md"
    cmd = [sys.executable, "-m", "bench", "--only", "12", "--db", "sqlite", "--duration", "1"]
    cmd += ["--warmup", "0", "--rounds", "1", "--quick", "--output", str(report)]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert "| 12 | ASGI servers | sqlite |" in text
    for app in ("floor", "canvas", "gateway"):
        section = text.split(f"{app} (`GET ", 1)[1].split("\n- ", 1)[0]
        rows = [line.strip() for line in section.splitlines() if line.strip().startswith("| ")][2:]
        assert [row.split(" | ")[0].strip("| ") for row in rows] == servers
        for server in servers:
            assert f"| 12 | sqlite | {app}: {server} | wrk |" in text
    assert "| 0 |" in text  # no failed request (the errors column)
