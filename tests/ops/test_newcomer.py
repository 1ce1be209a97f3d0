"""A newcomer's first hour, from the outside: a fresh `git clone`, then the README word for word.

`make run` as the Quickstart says (its default, relative data folder; only the ports moved, through
the variables the README documents), the Quickstart's curl session and its maintenance commands
(both read out of the clone's README.md, so this test IS the Quickstart), Ctrl-C, and `make run`
again with the data kept. Also: a taken port and a Redis that cannot start are reported at once.

Creating the clone's `.venv` means a pip install (a minute or more, and an index to install from),
so by default the clone's `.venv` is a link to the environment running this suite and `make` gets
`SKIP_INSTALL=1` (documented in the Makefile and the README). NEWCOMER_FRESH_VENV=1 makes the clone
build its own `.venv` the way a newcomer's `make run` does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.processes import ROOT
from devtools.redis_server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_only, pytest.mark.slow]

READY_LINE = "Canvas-Verse is running."
START_BOUND = 600.0 if os.environ.get("NEWCOMER_FRESH_VENV") == "1" else 180.0  # a bound, not a goal
# What the test suite's own environment sets and a newcomer's shell does not have.
SUITE_VARIABLES = (
    "APP_ENV",
    "REDIS_URL",
    "INTERNAL_SECRET",
    "LOG_LEVEL",
    "DATA_DIR",
    "LOG_JSON",
    "SMTP_URL",
    "APP_BASE_URL",
    "AUTH_MAIL_RETRY_MAX",
)


def readme_block(readme: str, heading: str) -> str:
    """The first ```sh block after `heading` in the README."""
    found = re.search(re.escape(heading) + r"\n.*?```sh\n(.*?)```", readme, re.S)
    assert found, f"no sh block under {heading!r}"
    return found.group(1)


def newcomer_env(ports: dict[str, int]) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in SUITE_VARIABLES and not key.endswith("_DATABASE_URL") and not key.startswith("PYTEST")
    }
    env.update({f"{name.upper()}_PORT": str(port) for name, port in ports.items()})
    if os.environ.get("NEWCOMER_FRESH_VENV") != "1":
        env["SKIP_INSTALL"] = "1"
    return env


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "canvas-verse"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    if os.environ.get("NEWCOMER_FRESH_VENV") != "1":
        (target / ".venv").symlink_to(Path(sys.prefix))
    return target


class MakeRun:
    """`make run` in a terminal of its own: Ctrl-C reaches its whole process group."""

    def __init__(self, clone: Path, env: dict[str, str]) -> None:
        self.out = clone.parent / f"make-run-{time.monotonic_ns()}.out"
        with self.out.open("wb") as sink:
            self.proc = subprocess.Popen(
                ["make", "run"],
                cwd=clone,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_running(self) -> str:
        deadline = time.monotonic() + START_BOUND
        while READY_LINE not in self.output:
            assert self.proc.poll() is None, self.output
            assert time.monotonic() < deadline, self.output
            time.sleep(0.2)
        return self.output

    def ctrl_c(self) -> str:
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(90)
        return self.output


def _leftovers(markers: list[str]) -> list[str]:
    """Command lines of live processes naming one of `markers` (a port, the clone's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "pytest" not in cmdline and any(marker in cmdline for marker in markers):
            found.append(cmdline)
    return found


def run_shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_fresh_clone_follows_the_readme(clone: Path) -> None:
    readme = (clone / "README.md").read_text()
    assert "make run" in readme_block(readme, "## Quickstart")
    curl_session = readme_block(readme, "### A client's first five minutes (curl)")
    maintenance = readme_block(readme, "### While it runs: the maintenance commands")
    ports = {"gateway": free_port(), "auth": free_port(), "canvas": free_port()}
    env = newcomer_env(ports)
    markers = [str(clone), *(f"--port {port}" for port in ports.values())]

    run = MakeRun(clone, env)
    try:
        printed = run.wait_running()
        assert f"http://127.0.0.1:{ports['gateway']}/schema" in printed
        assert (clone / "data" / "run.env").is_file()  # the relative default, inside the clone

        # The curl session, as written: its `# 204` / `# 401` comments are the answers it promises.
        session = run_shell(curl_session + 'echo "canvas=$ID"\n', clone, env)
        assert session.returncode == 0, session.stderr
        out = session.stdout.splitlines()
        promised = re.findall(r"#\s*(\d{3})\s*$", curl_session, re.M)
        assert promised == ["204", "401"]
        assert out[-3:-1] == promised
        canvas_id = out[-1].removeprefix("canvas=")
        listing, read = json.loads(out[0]), json.loads(out[1])
        assert [item["id"] for item in listing["items"]] == [canvas_id]
        assert (read["id"], read["title"], read["views"]) == (canvas_id, "Hello", 1)

        # The reset session, as written, through make run's own mail sink (no SMTP_URL here).
        reset_session = readme_block(
            readme, "### Forgot the password? (curl, through `make run`'s mail sink)"
        )
        reset = run_shell(reset_session, clone, env)
        assert reset.returncode == 0, reset.stderr
        promised = re.findall(r"#\s*(\d{3})\s*$", reset_session, re.M)
        assert promised == ["202", "204", "200"]
        assert reset.stdout.split() == promised
        assert "/reset-password?token=" in run.output  # make run printed the link

        # The maintenance commands, each as written, against the running system with nothing set up.
        for line in maintenance.splitlines():
            command = line.split("#", 1)[0].strip()
            if not command:
                continue
            result = run_shell(command, clone, env)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
            if "reconcile" in command:
                sweep = json.loads(result.stdout.splitlines()[-1])
                assert (sweep["owners_checked"], sweep["owners_removed"]) == (1, 0)  # Ada still exists
            if "deadletters list" in command:
                assert "no dead letters" in result.stderr
            if "settings_doc" in command:
                assert "| `INTERNAL_SECRET` |" in result.stdout
            if "backup" in command:
                copies = sorted(p.name for p in (clone / "data" / "backups").glob("*/*.db"))
                assert copies == ["auth.db", "canvas.db"]
    finally:
        stopped = run.ctrl_c()
    assert re.findall(r"stopped (\w+)", stopped) == ["gateway", "canvas", "relay", "auth", "mail", "redis"]
    assert "exited with" not in stopped
    assert "Traceback" not in stopped
    assert _leftovers(markers) == []

    # Again, with the data kept: the canvas is there and its views went on counting.
    run = MakeRun(clone, env)
    try:
        run.wait_running()
        api = f"http://127.0.0.1:{ports['gateway']}/api"
        again = run_shell(f'curl -s "{api}/canvases/{canvas_id}"', clone, env)
        assert json.loads(again.stdout)["views"] == 2
    finally:
        run.ctrl_c()
    assert _leftovers(markers) == []


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devtools.run", "--data-dir", str(data), "--auth-port", str(port)],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {port} (auth) is already in use" in result.stderr
    assert "AUTH_PORT=" in result.stderr
    assert not data.exists()  # nothing started, nothing written


def test_a_redis_that_cannot_start_shows_its_own_error_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manifest = data / "redis" / "appendonlydir" / "appendonly.aof.manifest"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("not a manifest\n")
    ports = [f"--{name}-port={free_port()}" for name in ("gateway", "auth", "canvas")]
    result = subprocess.run(
        [sys.executable, "-m", "devtools.run", "--data-dir", str(data), *ports],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,  # the old behaviour waited 30 s for a PING and then showed nothing useful
        check=False,
    )
    assert result.returncode == 1
    assert "Redis did not start" in result.stderr
    assert "Invalid AOF manifest file format" in result.stderr  # Redis's own words
    assert "Traceback" not in result.stderr
    assert not (data / "logs").exists()  # no service was started


@pytest.mark.parametrize("service", ["auth", "canvas"])
def test_ready_is_503_naming_the_missing_migration_until_it_is_applied(service: str, tmp_path: Path) -> None:
    from devtools.migrate import migrate
    from tests.support.processes import web_process

    port = free_port()
    env = {f"{service.upper()}_DATABASE_URL": f"sqlite:///{tmp_path}/{service}.db", "LOG_LEVEL": "WARNING"}
    process = web_process(service, f"services.{service}.app:app", env, tmp_path, port=port)
    process.start(wait=60)
    try:
        first = subprocess.run(
            ["curl", "-s", "-i", f"http://127.0.0.1:{port}/ready"], capture_output=True, text=True, check=True
        ).stdout
        assert first.startswith("HTTP/1.1 503")
        assert "application/problem+json" in first
        body = json.loads(first.split("\n\n", 1)[1])
        assert "migrations" in body["failed"]
        assert f"{service} database lacks migration 2026-11-26T" in body["detail"]
        assert "make migrate" in body["detail"]

        migrate([service], env=env)
        process.wait_healthy(30, f"http://127.0.0.1:{port}/ready")  # 200 once applied, no restart
    finally:
        process.stop()


def test_make_runs_own_origins_are_allowed_besides_the_configured_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from devtools.run import base_env, parse_args

    args = parse_args(["--gateway-port", "8123"])
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", '["https://app.example.com"]')
    assert json.loads(base_env(args, "redis://x")["GATEWAY_ALLOWED_ORIGINS"]) == [
        "https://app.example.com",
        "http://127.0.0.1:8123",
        "http://localhost:8123",
    ]
    monkeypatch.delenv("GATEWAY_ALLOWED_ORIGINS")
    assert json.loads(base_env(args, "redis://x")["GATEWAY_ALLOWED_ORIGINS"]) == [
        "http://127.0.0.1:8123",
        "http://localhost:8123",
    ]
