"""The one way tests start a web app as a real uvicorn process (the command the images run)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from devtools.processes import Process, uvicorn_cmd
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
