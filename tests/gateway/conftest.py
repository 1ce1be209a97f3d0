"""Gateway processes in front of a stub upstream (tests/support/stub_service.py), all real HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import Process
from tests.support.http import ALLOWED_ORIGIN, Client, http
from tests.support.processes import url_of, web_process
from tests.support.stubs import STUB_APP, Stub

__all__ = ["http"]


@pytest.fixture(scope="session")
def stub(data_dir: Path) -> Iterator[Process]:
    process = web_process("stub", STUB_APP, {}, data_dir / "logs").start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def start_gateway(data_dir: Path, stub: Process) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(env: dict[str, str] | None = None, **settings: Any) -> Process:
        env = {
            **(env or {}),
            "GATEWAY_AUTH_URL": url_of(stub),
            "GATEWAY_CANVAS_URL": url_of(stub),
            "GATEWAY_ALLOWED_ORIGINS": f'["{ALLOWED_ORIGIN}"]',
            "GATEWAY_REDIS_COOLDOWN": "0.2",
            # /metrics on the public port for the tests' own address (test_edge.py checks the default)
            "GATEWAY_METRICS_ALLOW": '["127.0.0.1"]',
            "GATEWAY_METRICS_PORT": "0",
        }
        env |= {f"GATEWAY_{k.upper()}": str(v) for k, v in settings.items()}
        process = web_process("gateway", "gateway.app:app", env, data_dir / "logs").start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def gateway(start_gateway: Callable[..., Process]) -> str:
    return url_of(start_gateway())


@pytest.fixture(scope="session")
def hanging_port() -> Iterator[int]:
    """A port that accepts connections (into the backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
async def upstream(http: Client, stub: Process) -> AsyncIterator[Stub]:
    steer = Stub(http, url_of(stub))
    yield steer
    await steer.state(validate_delay=0.0, answer_delay=0.0, renew=False)
