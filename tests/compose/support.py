"""Driving docker-compose.yml as an operator does: one Compose project per run, HTTP through the
published port only, and `docker` for what an operator would look at (health, logs, metrics)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from devtools.processes import ROOT
from devtools.redis_server import free_port
from tests.ops.compose import COMPOSE_FILE, variables

# What docker-compose.yml interpolates (`${NAME...}`): set by the test or left to the file's defaults.
COMPOSE_VARIABLES = frozenset(name for name, _ in variables(COMPOSE_FILE.read_text()))

# Every bounded wait of the suite; the whole run stays far below `make test-compose`'s 10 minutes.
UP_TIMEOUT = 240.0  # `up -d` on a cold, busy 2-core machine: migrations, then two health checks in a row
READY_TIMEOUT = 120.0
# The services' /metrics (their internal port, inside the container: it is never published).
SERVICE_METRICS = {"canvas": "http://127.0.0.1:8002/metrics", "auth": "http://127.0.0.1:8001/metrics"}


def compose_cli() -> list[str]:
    """`docker compose` (v2) when the plugin is installed, else `docker-compose` (v1)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    found = shutil.which("docker-compose")
    assert found, "neither `docker compose` nor `docker-compose` is installed"
    return [found]


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, every: float = 1.0, detail: Callable[[], Any] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s {detail()}")
        time.sleep(every)


@dataclass
class Compose:
    """One Compose project, named uniquely, with its own image tag and published port."""

    project: str = field(default_factory=lambda: f"cvtest{secrets.token_hex(4)}")
    port: int = field(default_factory=free_port)
    cli: list[str] = field(default_factory=compose_cli)

    @property
    def image(self) -> str:
        return f"canvas-verse:{self.project}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """An operator's shell: Docker's own variables as they are, and of the variables the compose
        file reads only those set here (the README's exports), never the test session's own
        (tests/conftest.py sets LOG_LEVEL=WARNING, SMTP_URL, ... for the in-process suite)."""
        inherited = {name: value for name, value in os.environ.items() if name not in COMPOSE_VARIABLES}
        return {
            **inherited,
            "COMPOSE_PROJECT_NAME": self.project,
            "COMPOSE_HTTP_TIMEOUT": "600",  # a loaded daemon (vfs) takes minutes to remove containers
            "CANVAS_VERSE_IMAGE": self.image,
            "GATEWAY_PUBLISH": f"127.0.0.1:{self.port}",
            "INTERNAL_SECRET": self._secrets["internal"],
            "POSTGRES_PASSWORD": self._secrets["postgres"],
            "GATEWAY_COOKIE_SECURE": "false",  # plain HTTP on loopback; behind TLS it stays true
        }

    def __post_init__(self) -> None:
        self._secrets = {"internal": secrets.token_urlsafe(48), "postgres": secrets.token_urlsafe(24)}
        # An empty env file instead of an `.env` a developer may keep beside the compose file.
        self._env_file = Path(tempfile.gettempdir()) / f"{self.project}.env"
        self._env_file.write_text("")

    @property
    def compose(self) -> list[str]:
        return [*self.cli, "--env-file", str(self._env_file), "-p", self.project]

    def close(self) -> None:
        self._env_file.unlink(missing_ok=True)

    def build(self) -> None:
        # A compose `build:` gets no network on these machines: the image is built first, as the
        # operations section of the README says, then `up` finds it under CANVAS_VERSE_IMAGE.
        self.docker("build", "--network", "host", "-q", "-t", self.image, ".", timeout=1500)

    def __call__(self, *args: str, timeout: float = UP_TIMEOUT) -> str:
        return self._run([*self.compose, *args], timeout)

    def pipe(self, *args: str, data: bytes = b"", timeout: float = 120.0) -> bytes:
        """A compose command with bytes in and out (`exec -T postgres pg_dump ... > file`)."""
        command = [*self.compose, *args]
        done = subprocess.run(
            command, cwd=ROOT, env=self.env, input=data, capture_output=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]!r}"
        return done.stdout

    def docker(self, *args: str, timeout: float = 60.0) -> str:
        return self._run(["docker", *args], timeout)

    def _run(self, command: Sequence[str], timeout: float) -> str:
        done = subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
        return done.stdout

    def containers(self, service: str) -> list[str]:
        """The running containers of a service (one per replica)."""
        ids = self("ps", "-q", service, timeout=60).split()
        return [c for c in ids if self.docker("inspect", "-f", "{{.State.Running}}", c).strip() == "true"]

    def health(self, container: str) -> str:
        return self.docker(
            "inspect", "-f", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", container
        ).strip()

    def wait_healthy(self, replicas: dict[str, int] | None = None, timeout: float = UP_TIMEOUT) -> None:
        """Every replica of every checked service healthy, and the gateway ready through the port."""
        want = {"postgres": 1, "redis": 1, "auth": 1, "canvas": 1, "gateway": 1, **(replicas or {})}

        def healthy() -> bool:
            for service, count in want.items():
                ids = self.containers(service)
                if len(ids) != count or any(self.health(c) != "healthy" for c in ids):
                    return False
            return http(self, "GET", "/ready")[0] == 200

        wait_for(f"{self.project} healthy with {want}", healthy, timeout, every=2.0)

    def logs(self, service: str) -> list[str]:
        """Every non-empty line that every container of a service, stopped ones too (`ps -q` lists
        them), wrote to stdout or stderr, as Docker keeps them (`docker logs`, no prefix to strip)."""
        lines: list[str] = []
        for container in self("ps", "-q", service, timeout=60).split():
            done = subprocess.run(
                ["docker", "logs", container],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, (
                f"docker logs {container[:12]} exited {done.returncode}: {done.stderr}"
            )
            lines += [line for line in f"{done.stdout}\n{done.stderr}".splitlines() if line.strip()]
        return lines

    def everything(self) -> str:
        """The project's containers, running or not (for a failure's message)."""
        return self.docker("ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}")

    def metrics(self, container: str, service: str) -> str:
        url = SERVICE_METRICS[service]
        script = f"import urllib.request; print(urllib.request.urlopen('{url}').read().decode())"
        return self.docker("exec", container, "python", "-c", script)

    def volumes(self) -> list[str]:
        return self.docker(
            "volume", "ls", "-q", "--filter", f"label=com.docker.compose.project={self.project}"
        ).split()


def http(
    system: Compose, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, Any]:
    """One request through the published port; (status, decoded body or None). Never raises for a status."""
    request = urllib.request.Request(
        system.url + path, method=method, data=json.dumps(body).encode() if body is not None else None
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, None  # no answer at all (counted as an error by every caller)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


# The canvas service's read route as its /metrics labels it: Litestar's PrometheusMiddleware with
# group_path labels a request by its route template (the service's own path, /api/... included).
READ_ROUTE = "/api/canvases/{canvas_id}"


def counted_reads(metrics: str) -> int:
    """Answered `GET /api/canvases/{canvas_id}` requests in a canvas replica's Prometheus text: the
    sample `canvasverse_requests_total{method="GET",path=READ_ROUTE,status_code="200"}`, which under
    multiprocess mode already adds up every worker of the container."""
    total = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if (
                sample.name == "canvasverse_requests_total"
                and sample.labels.get("method") == "GET"
                and sample.labels.get("path") == READ_ROUTE
                and sample.labels.get("status_code") == "200"
            ):
                total += sample.value
    return int(total)


def scraped_reads(system: Compose, container: str) -> int:
    """counted_reads of one replica's /metrics; a scrape without the request counter at all (wrong
    name or labels, not a replica that served nothing yet) fails loudly instead of reading as 0."""
    text = system.metrics(container, "canvas")
    assert "canvasverse_requests_total" in text, f"{container[:12]}: no request counter in\n{text[:2000]}"
    return counted_reads(text)
