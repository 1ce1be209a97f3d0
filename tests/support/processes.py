"""The one way tests start a web app as a real uvicorn process (the command the images run), and
the canvas reconcile command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devtools.processes import ROOT, Process, uvicorn_cmd
from devtools.redis_server import free_port


def web_process(
    name: str,
    app: str,
    env: Mapping[str, str],
    logs: Path,
    *,
    port: int | None = None,
    workers: int = 1,
) -> Process:
    """`app` (`module:app`) served on `port` (a free one by default), not started yet; its log is
    `logs/<name>-<port>.log`, its health URL `/health`."""
    port = port or free_port()
    health = f"http://127.0.0.1:{port}/health"
    return Process(
        name, uvicorn_cmd(app, port, workers=workers), dict(env), logs / f"{name}-{port}.log", health
    )


def url_of(process: Process) -> str:
    """The base URL of a process started by `web_process`."""
    assert process.health_url
    return process.health_url.removesuffix("/health")


async def run_reconcile(env: Mapping[str, str]) -> tuple[int | None, bytes, dict[str, Any]]:
    """`python -m services.canvas.reconcile` with `env` over the test run's environment: its exit
    code, its stderr, and the JSON result it prints last (empty when it printed none)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.canvas.reconcile",
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = out.decode().strip().splitlines()
    return process.returncode, err, json.loads(lines[-1]) if lines else {}
