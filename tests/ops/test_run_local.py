"""`make run`'s start-up path: starts everything, serves a client, stops cleanly on Ctrl-C, keeps data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.processes import ROOT
from devtools.redis_server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.sqlite_only, pytest.mark.slow]

READY_LINE = "Canvas-Verse is running."


def _start(data_dir: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[bytes], Path]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_DATABASE_URL") and k not in ("REDIS_URL", "INTERNAL_SECRET", "SMTP_URL")
    }
    out = data_dir.parent / f"run-{time.monotonic_ns()}.out"
    cmd = [sys.executable, "-m", "devtools.run", "--data-dir", str(data_dir)]
    for name, port in ports.items():
        cmd += [f"--{name}-port", str(port)]
    with out.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while READY_LINE not in out.read_text():
        assert proc.poll() is None, out.read_text()
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.2)
    return proc, out


def _listening_pids(marker: str) -> list[int]:
    """Processes whose command line mentions `marker` (a port or the data folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and "pytest" not in cmdline:
                pids.append(int(entry.name))
    return pids


def _call(method: str, url: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read() or b"{}")


def _printed_link(out: Path, marker: str) -> str:
    """The token of the first link with `marker` that `make run` printed (bounded wait)."""
    deadline = time.monotonic() + 60
    while marker not in (text := out.read_text()):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    line = next(line for line in text.splitlines() if marker in line)
    return line.split(marker, 1)[1].strip()


def _wait_for_line(out: Path, line: str) -> None:
    deadline = time.monotonic() + 60
    while line not in (text := out.read_text()):
        assert time.monotonic() < deadline, text
        time.sleep(0.2)


def _call_until_served(method: str, url: str) -> tuple[int, dict]:
    """The first answer that is not a 503 (a service may not have reconnected yet), within 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return _call(method, url)
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or time.monotonic() > deadline:
                raise


def _stop(proc: subprocess.Popen[bytes], data_dir: Path, ports: dict[str, int]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0
    for marker in [str(data_dir), *(f"--port {p}" for p in ports.values())]:
        assert _listening_pids(marker) == [], f"left behind: {marker}"


def test_make_run_starts_serves_stops_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {"gateway": free_port(), "auth": free_port(), "canvas": free_port()}
    api = f"http://127.0.0.1:{ports['gateway']}/api"
    email, password = "runner@example.com", "correct horse battery"

    proc, out = _start(data_dir, ports)
    try:
        assert f"http://127.0.0.1:{ports['gateway']}/schema" in out.read_text()
        status, body = _call("POST", f"{api}/auth/signup", {"email": email, "password": password})
        assert status == 201
        canvas = {"title": "kept", "type": "python", "code": "print(1)", "isPublic": True}
        status, created = _call("POST", f"{api}/canvases", canvas, body["token"])
        assert status == 201
        status, read = _call("GET", f"{api}/canvases/{created['id']}")
        assert (status, read["views"]) == (200, 1)
        # No SMTP_URL: the local sink keeps the signup's verification mail and prints its link.
        token = _printed_link(out, "/verify-email?token=")
        status, user = _call("POST", f"{api}/auth/email-verification/confirm", {"token": token})
        assert (status, user["emailVerified"]) == (200, True)
        kept = list((data_dir / "mail").glob("*.eml"))
        assert len(kept) == 1
        assert token in kept[0].read_text()
        # Redis killed under the running system: the supervisor starts it again from its AOF
        # (fsynced every second, hence the wait), and the services carry on with it.
        time.sleep(1.1)
        redis_url = next(v for v in (data_dir / "run.env").read_text().split() if v.startswith("REDIS_URL="))
        redis_title = "redis-server " + redis_url.split("//")[1].split("/")[0]  # its process title
        (redis_pid,) = _listening_pids(redis_title)
        os.kill(redis_pid, signal.SIGKILL)
        _wait_for_line(out, "redis restarted from its append-only file")
        assert len(_listening_pids(redis_title)) == 1
        assert _listening_pids(redis_title) != [redis_pid]
        status, read = _call_until_served("GET", f"{api}/canvases/{created['id']}")
        assert (status, read["views"]) == (200, 2)
    finally:
        _stop(proc, data_dir, ports)

    proc, _ = _start(data_dir, ports)
    try:
        status, body = _call("POST", f"{api}/auth/login", {"email": email, "password": password})
        assert status == 200
        status, read = _call("GET", f"{api}/canvases/{created['id']}")
        assert (status, read["title"], read["views"]) == (200, "kept", 3)
    finally:
        _stop(proc, data_dir, ports)
