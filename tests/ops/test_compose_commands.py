"""The commands docker-compose.yml gives each container start the real processes.

Docker does not run here, so this runs each container's command as written (migration job, auth,
relay, canvas, gateway), in production mode, against this run's PostgreSQL databases and Redis,
with the compose environment (host names mapped to loopback), and drives one client flow.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import Process
from devtools.redis_server import free_port
from tests.ops.compose import interpolate, load

pytestmark = pytest.mark.e2e

SERVICES = ("auth", "relay", "canvas", "gateway")


def _compose_env(ports: dict[str, int]) -> dict[str, str]:
    compose = load()
    given = {"INTERNAL_SECRET": secrets.token_urlsafe(32), "POSTGRES_PASSWORD": "unused"}
    env = {k: interpolate(str(v), given) for k, v in compose["x-app"]["environment"].items()}
    env["REDIS_URL"] = os.environ["REDIS_URL"]
    for name in ("AUTH_DATABASE_URL", "CANVAS_DATABASE_URL"):
        env[name] = os.environ[name]  # this run's fresh databases instead of the postgres container
    compose_ports = {"auth": 8001, "canvas": 8002, "gateway": 8000}
    for svc, port in ports.items():
        old, new = f"http://{svc}:{compose_ports[svc]}", f"http://127.0.0.1:{port}"
        env = {key: value.replace(old, new) for key, value in env.items()}
    env["LOG_LEVEL"] = "WARNING"
    del env["PROMETHEUS_MULTIPROC_DIR"]  # a tmpfs per container there; a directory per process here
    return env


def _command(service: str, port: int | None) -> list[str]:
    command = [interpolate(part, {}) for part in load()["services"][service]["command"]]
    if command[:3] == ["python", "-m", "shared.serve"]:  # a web process: uvicorn's command line
        command[command.index("--port") + 1] = str(port)
        command[command.index("--host") + 1] = "127.0.0.1"
        command[command.index("--workers") + 1] = "1"
    return [sys.executable if c == "python" else c for c in command]


@pytest.fixture(scope="module")
def compose_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not os.environ["AUTH_DATABASE_URL"].startswith("postgres"):
        pytest.skip("the compose commands are checked in the PostgreSQL run")
    logs: Path = tmp_path_factory.mktemp("compose-logs")
    ports = {svc: free_port() for svc in ("auth", "canvas", "gateway")}
    env = _compose_env(ports)
    metrics = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics-migrate"))}
    migrate = Process("migrate", _command("migrate", None), {**env, **metrics}, logs / "migrate.log").start()
    assert migrate.proc is not None
    assert migrate.proc.wait(120) == 0, migrate.tail()
    procs = []
    try:
        for svc in SERVICES:
            port = ports.get(svc)
            health = f"http://127.0.0.1:{port}/ready" if port else None
            # Each container has its own multiprocess metrics directory (a tmpfs in the compose file).
            own = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp(f"metrics-{svc}"))}
            procs.append(Process(svc, _command(svc, port), own, logs / f"{svc}.log", health).start(60))
        yield f"http://127.0.0.1:{ports['gateway']}"
    finally:
        for proc in reversed(procs):
            proc.stop()


def _call(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read() or b"{}")


def test_compose_commands_serve_a_client_flow(compose_system: str) -> None:
    email = f"compose-{secrets.token_hex(4)}@example.com"
    status, body = _call("POST", f"{compose_system}/api/auth/signup", {"email": email, "password": "p" * 12})
    assert status == 201
    token = body["token"]
    status, canvas = _call(
        "POST", f"{compose_system}/api/canvases", {"title": "t", "type": "python", "code": "x"}, token
    )
    assert status == 201
    status, read = _call("GET", f"{compose_system}/api/canvases/{canvas['id']}", token=token)
    assert (status, read["views"]) == (200, 1)
