"""The whole system as real processes (tests.support.system): auth, canvas, the outbox relay and the
gateway, each on a free port with the environment the root conftest prepared. Tests talk to
`system.url` (the gateway) over HTTP and may stop, kill or restart any process through its handle;
`system.ensure_running()` brings stopped ones back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http import http
from tests.support.processes import url_of
from tests.support.system import System, gateway_process, system_of

__all__ = ["http"]


@pytest.fixture
def own_gateway(system: System, data_dir: Path) -> Iterator[System]:
    """The system behind a gateway of the test's own: its counters move only with the test's calls,
    and its Redis budget is generous (5 s, not 0.15 s) so a loaded machine does not trip its Redis
    guard, which bypasses the cache (a test of the cache must see the cache)."""
    env = {**system.gateway_env, "GATEWAY_REDIS_TIMEOUT": "5"}
    process, metrics_url = gateway_process("gateway-own", data_dir / "logs" / "e2e", env)
    process.start()
    try:
        yield System(
            url_of(process),
            system.auth,
            system.canvas,
            system.relay,
            process,
            metrics_url=metrics_url,
            gateway_env=env,
        )
    finally:
        process.stop()


@pytest.fixture(scope="package")
def system(data_dir: Path) -> Iterator[System]:
    """Stopped when tests/e2e ends: its outbox relay and mailer must not run on into the suites that
    drive their own (tests/auth's relay tests saw it take their events and dead-letter their mail)."""
    running = system_of(data_dir / "logs" / "e2e")
    try:
        for process in running.processes:
            process.start()
        yield running
    finally:
        for process in reversed(running.processes):
            process.stop()
