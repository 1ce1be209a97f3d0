"""The whole system as real processes: auth, canvas, the outbox relay and the gateway.

Each runs on a free port with the environment the root conftest prepared (REDIS_URL, the database
URLs, INTERNAL_SECRET). Tests talk to `system.url` (the gateway) over HTTP and may stop, kill or
restart any process through its handle; `system.ensure_running()` brings stopped ones back.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import free_port
from tests.gateway.support import ALLOWED_ORIGIN, http

__all__ = ["http"]

CIRCUIT_COOLDOWN = 2
READ_TIMEOUT = 3  # a hung service answers 504 after this long


@dataclass
class System:
    url: str  # the gateway: what clients talk to
    auth: Process
    canvas: Process
    relay: Process
    gateway: Process
    metrics_url: str = field(default="", kw_only=True)  # the gateway's own /metrics listener

    @property
    def processes(self) -> list[Process]:
        return [self.auth, self.canvas, self.relay, self.gateway]

    def ensure_running(self) -> None:
        for process in self.processes:
            if not process.running:
                process.start()


def _web(name: str, app: str, logs: Path, env: dict[str, str]) -> tuple[Process, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Process(name, uvicorn_cmd(app, port), env, logs / f"{name}.log", f"{url}/health"), url


@pytest.fixture(scope="session")
def system(data_dir: Path) -> Iterator[System]:
    logs = data_dir / "logs" / "e2e"
    auth, auth_url = _web("auth", "services.auth.app:app", logs, {})
    canvas, canvas_url = _web("canvas", "services.canvas.app:app", logs, {"CANVAS_AUTH_URL": auth_url})
    metrics_port = free_port()
    relay = Process("relay", [sys.executable, "-m", "services.auth.relay"], {}, logs / "relay.log")
    gateway, gateway_url = _web(
        "gateway",
        "gateway.app:app",
        logs,
        {
            "GATEWAY_AUTH_URL": auth_url,
            "GATEWAY_CANVAS_URL": canvas_url,
            "GATEWAY_ALLOWED_ORIGINS": f'["{ALLOWED_ORIGIN}"]',
            "GATEWAY_CIRCUIT_COOLDOWN": str(CIRCUIT_COOLDOWN),
            "GATEWAY_REDIS_COOLDOWN": "0.2",
            "GATEWAY_READ_TIMEOUT": str(READ_TIMEOUT),
            "GATEWAY_METRICS_PORT": str(metrics_port),
        },
    )
    running = System(
        gateway_url, auth, canvas, relay, gateway, metrics_url=f"http://127.0.0.1:{metrics_port}/metrics"
    )
    try:
        for process in running.processes:
            process.start()
        yield running
    finally:
        for process in reversed(running.processes):
            process.stop()
