"""Gateway processes in front of a stub upstream (tests/gateway/stub_service.py), all real HTTP."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import free_port
from shared import internal_auth
from shared.tokens import session_id_of
from tests.gateway.support import ALLOWED_ORIGIN, Client, http

__all__ = ["http"]


def _service(name: str, app: str, data_dir: Path, env: dict[str, str]) -> Process:
    port = free_port()
    return Process(
        name,
        uvicorn_cmd(app, port),
        env,
        data_dir / "logs" / f"{name}-{port}.log",
        f"http://127.0.0.1:{port}/health",
    )


def url_of(process: Process) -> str:
    assert process.health_url
    return process.health_url.removesuffix("/health")


@pytest.fixture(scope="session")
def stub(data_dir: Path) -> Iterator[Process]:
    process = _service("stub", "tests.gateway.stub_service:app", data_dir, {}).start()
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
        process = _service("gateway", "gateway.app:app", data_dir, env).start()
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


def credential(**claims: Any) -> dict[str, str]:
    return {
        internal_auth.HEADER: internal_auth.sign(
            os.environ["INTERNAL_SECRET"].encode(), **{"audience": "auth", **claims}
        )
    }


class Stub:
    """Steers the stub upstream through its /stub routes."""

    def __init__(self, http: Client, url: str) -> None:
        self.http = http
        self.url = url

    async def session(self, user_id: str = "user-1", lifetime: int = 30 * 86400) -> tuple[str, str]:
        """A new session: (token, session id)."""
        reply = await self.http(
            "POST",
            f"{self.url}/stub/sessions",
            json={"userId": user_id, "lifetime": lifetime},
            headers=credential(),
        )
        token = reply.json()["token"]
        return token, session_id_of(token)

    async def revoke(self, session_id: str) -> None:
        await self.http(
            "POST", f"{self.url}/stub/revoke", json={"sessionId": session_id}, headers=credential()
        )

    async def state(self, **changes: Any) -> dict[str, Any]:
        if changes:
            reply = await self.http("POST", f"{self.url}/stub/state", json=changes, headers=credential())
        else:
            reply = await self.http("GET", f"{self.url}/stub/state", headers=credential())
        return reply.json()  # type: ignore[no-any-return]


@pytest.fixture
async def upstream(http: Client, stub: Process) -> AsyncIterator[Stub]:
    steer = Stub(http, url_of(stub))
    yield steer
    await steer.state(validate_delay=0.0, answer_delay=0.0, renew=False)
