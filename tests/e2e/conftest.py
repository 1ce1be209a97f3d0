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
    gateway_env: dict[str, str] = field(default_factory=dict, kw_only=True)  # to start another one

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


def start_gateway_process(name: str, logs: Path, env: dict[str, str]) -> tuple[Process, str, str]:
    """A gateway process (not started) with its own metrics listener: process, URL, metrics URL."""
    metrics_port = free_port()
    process, url = _web(name, "gateway.app:app", logs, {**env, "GATEWAY_METRICS_PORT": str(metrics_port)})
    return process, url, f"http://127.0.0.1:{metrics_port}/metrics"


@pytest.fixture
def own_gateway(system: System, data_dir: Path) -> Iterator[System]:
    """The system behind a gateway of the test's own: its counters move only with the test's calls,
    and its Redis budget is generous (5 s, not 0.15 s) so a loaded machine does not trip its Redis
    guard, which bypasses the cache (a test of the cache must see the cache)."""
    env = {**system.gateway_env, "GATEWAY_REDIS_TIMEOUT": "5"}
    process, url, metrics_url = start_gateway_process("gateway-own", data_dir / "logs" / "e2e", env)
    process.start()
    try:
        yield System(
            url,
            system.auth,
            system.canvas,
            system.relay,
            process,
            metrics_url=metrics_url,
            gateway_env=env,
        )
    finally:
        process.stop()


@pytest.fixture(scope="session")
def system(data_dir: Path) -> Iterator[System]:
    logs = data_dir / "logs" / "e2e"
    auth, auth_url = _web("auth", "services.auth.app:app", logs, {})
    canvas, canvas_url = _web("canvas", "services.canvas.app:app", logs, {"CANVAS_AUTH_URL": auth_url})
    relay = Process("relay", [sys.executable, "-m", "services.auth.relay"], {}, logs / "relay.log")
    gateway_env = {
        "GATEWAY_AUTH_URL": auth_url,
        "GATEWAY_CANVAS_URL": canvas_url,
        "GATEWAY_ALLOWED_ORIGINS": f'["{ALLOWED_ORIGIN}"]',
        "GATEWAY_CIRCUIT_COOLDOWN": str(CIRCUIT_COOLDOWN),
        "GATEWAY_REDIS_COOLDOWN": "0.2",
        "GATEWAY_READ_TIMEOUT": str(READ_TIMEOUT),
    }
    gateway, gateway_url, metrics_url = start_gateway_process("gateway", logs, gateway_env)
    running = System(
        gateway_url, auth, canvas, relay, gateway, metrics_url=metrics_url, gateway_env=gateway_env
    )
    try:
        for process in running.processes:
            process.start()
        yield running
    finally:
        for process in reversed(running.processes):
            process.stop()
