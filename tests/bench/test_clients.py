"""Scenario 13's client process on a tiny scale: every client it compares gets its answers from the
floor app (a client that fails would be measured at the speed of its errors). Speed is not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench.clients import available
from devtools.processes import ROOT, Process, uvicorn_cmd
from devtools.redis_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]


@pytest.fixture
def floor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("floor") / "floor.log"
    url = f"http://127.0.0.1:{port}"
    process = Process("floor", uvicorn_cmd("bench.floorapp:app", port), {}, log, f"{url}/health")
    process.start(30)
    try:
        yield url
    finally:
        process.stop(10)


def test_every_client_gets_its_answers(floor: str) -> None:
    cmd = [sys.executable, "-m", "bench.clients", floor, "--json", "--seconds", "0.3", "--rounds", "2"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rounds = json.loads(result.stdout)
    assert list(rounds) == available()
    for name, figures in rounds.items():
        assert len(figures) == 2, name
        assert all(r["errors"] == 0 and r["operations"] > 0 and r["cpu_seconds"] > 0 for r in figures), name


def test_the_reference_client_keeps_its_connections(floor: str) -> None:
    """The hand-written reference reuses its connections (it once reconnected for every request)."""
    import asyncio

    from bench import clients

    async def main() -> None:
        call, close = await clients.CLIENTS["reference (hand-written)"](floor, "/empty", clients._headers())
        before = clients._Connection.opened
        try:
            for _ in range(50):
                await asyncio.gather(*(call() for _ in range(4)))
        finally:
            await close()
        assert clients._Connection.opened - before <= 4

    asyncio.run(main())
