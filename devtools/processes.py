"""Start and stop the project's real processes (used by `make run` and the end-to-end tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# uvicorn's httptools protocol plus header-size and head/body deadlines (shared/server.py).
HTTP_PROTOCOL = "shared.server:LimitedHttpToolsProtocol"
LIMIT_CONCURRENCY = 1000  # connections + requests per process before uvicorn answers 503 at once
KEEP_ALIVE = 5  # seconds an idle keep-alive connection is kept


def uvicorn_cmd(app: str, port: int, *, workers: int = 1) -> list[str]:
    """The command that serves an ASGI app, as in the container images: uvicorn's command line through
    `shared.serve` (its supervisor stops listening as soon as it stops)."""
    return [
        sys.executable,
        "-m",
        "shared.serve",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        HTTP_PROTOCOL,
        "--limit-concurrency",
        str(LIMIT_CONCURRENCY),
        "--timeout-keep-alive",
        str(KEEP_ALIVE),
        "--no-access-log",
        "--no-proxy-headers",  # X-Forwarded-For is the gateway's to judge (GATEWAY_TRUSTED_PROXIES)
        "--timeout-graceful-shutdown",
        "10",
    ]


class Process:
    """One child process with its own environment; its output goes to `log_path`."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        health_url: str | None = None,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.health_url = health_url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: float = 30.0) -> Process:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A process group of its own, so a Ctrl-C in a terminal reaches only the supervisor; not
            # a session of its own, which Linux's autogroups would make a scheduling group of its
            # own: the system's processes share one, so the cores go to threads by their priority
            # (the auth service's hashing threads at their nice value below everyone's requests)
            # rather than to each process in equal parts first, which left a busy machine's
            # processes runnable and not run for up to 0.6 s (bench/FINDINGS.md, 2026-12-08).
            process_group=0,
        )
        log.close()
        if self.health_url:
            self.wait_healthy(wait)
        return self

    def wait_healthy(self, timeout: float = 30.0, url: str | None = None) -> None:
        url = url or self.health_url
        assert url
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not healthy at {url} after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.running:
            assert self.proc
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        """Graceful stop (SIGTERM), then SIGKILL after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """Abrupt death (SIGKILL): no shutdown hooks run."""
        self.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()
