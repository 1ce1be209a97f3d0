"""`python -m bench.inproc`: the CPU one app spends per request, called in-process (no HTTP server).

python -m bench.inproc canvas            # the canvas service's cached read
python -m bench.inproc gateway auth      # the gateway's proxied read, the auth service's validation
python -m bench.inproc auth --db postgres  # the same on PostgreSQL (127.0.0.1:5432, as `make bench`)
python -m bench.inproc me                # the auth service's `GET /api/users/me` (scenario 9's others)
python -m bench.inproc auth --instructions  # instructions per request, under valgrind (see below)

Starts the real system (`bench/system.py`, SQLite unless `--db postgres`), makes a reader and a
private canvas through the gateway, then builds the named app in this process from the same
environment, runs its lifespan and calls it as ASGI with the request scenario 11 measures
(`concurrency` callers, each awaiting its answer), timing the process's CPU (`time.process_time()`:
the app, its clients, aiosqlite's thread) per request over several rounds. The gateway's upstream
calls still go to the real services' own processes, whose CPU is not counted. What uvicorn costs
(parsing, writes) is left out: this is the app's part of scenario 11's figure, steadier than it on a
busy machine (issue 18; bench/FINDINGS.md).

`--instructions` counts instead the instructions the process executes per request, with valgrind's
callgrind (Debian's `valgrind` package; not a Python package, so not installed by `make install`):
the same program run twice under it, with `--requests` and twice as many requests in one round, and
the difference divided by `--requests` (startup, the warm-up and the system's own processes cancel
out; PYTHONHASHSEED is fixed). A count does not move with the machine's load or speed: two runs of
the same commit agree within ~1 %, where CPU time moved 5-10 % between runs on a shared machine,
so a change of a few percent can be judged by one run of each side. It is a count, not a time: a
syscall or a cache miss costs more than an addition.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.api import Api
from bench.system import System

Request = tuple[str, str, bytes, list[tuple[bytes, bytes]]]  # method, path, body, headers
MODULES = {
    "gateway": "gateway.app",
    "canvas": "services.canvas.app",
    "auth": "services.auth.app",
    "me": "services.auth.app",  # the auth service's `GET /api/users/me`, as the gateway proxies it
}
REQUEST_ID = b"bench-0123456789abcdef"


def _requests(system: System, token: str, user_id: str, session_id: str, canvas: str) -> dict[str, Any]:
    read = f"/api/canvases/{canvas}"
    body = json.dumps({"sessionId": session_id}).encode()

    def gateway() -> Request:
        return "GET", read, b"", [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]

    def canvas_read() -> Request:
        credential = system.credential(user_id, session_id).encode()
        return "GET", read, b"", [(b"x-request-id", REQUEST_ID), (b"x-internal-auth", credential)]

    def validation() -> Request:
        credential = system.credential(audience="auth", api_only=False).encode()
        headers = [(b"x-request-id", REQUEST_ID), (b"content-type", b"application/json")]
        headers += [(b"content-length", str(len(body)).encode()), (b"x-internal-auth", credential)]
        return "POST", "/internal/sessions/validate", body, headers

    def me() -> Request:
        credential = system.credential(user_id, session_id, audience="auth").encode()
        return "GET", "/api/users/me", b"", [(b"x-request-id", REQUEST_ID), (b"x-internal-auth", credential)]

    return {"gateway": gateway, "canvas": canvas_read, "auth": validation, "me": me}


async def _call(app: Any, request: Request) -> int:
    method, path, body, headers = request
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # a client that stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def _lifespan(app: Any) -> tuple[asyncio.Queue[Any], asyncio.Queue[Any], asyncio.Future[Any]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started}")
    return inbox, outbox, task


async def measure(app: Any, request: Callable[[], Request], *, total: int, concurrency: int) -> float:
    """CPU µs per request over `total` requests from `concurrency` callers."""
    fixed = request()  # a credential stays valid for ~30 s: one per round
    each = max(1, total // concurrency)

    async def caller() -> None:
        for _ in range(each):
            status = await _call(app, fixed)
            if status != 200:
                raise RuntimeError(f"answered {status}")

    began = time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return (time.process_time() - began) / (each * concurrency) * 1e6


async def _one(name: str, request: Callable[[], Request], args: argparse.Namespace) -> list[float]:
    module = importlib.import_module(MODULES[name])
    app = module.create_app(
        importlib.import_module(module.__name__.rsplit(".", 1)[0] + ".settings").from_environment()
    )
    inbox, outbox, task = await _lifespan(app)
    try:
        await measure(app, request, total=300, concurrency=args.concurrency)  # warm-up
        return [
            await measure(app, request, total=args.requests, concurrency=args.concurrency)
            for _ in range(args.rounds)
        ]
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="cv-inproc-"))
    system = System(args.db, data_dir, data_dir / "logs")
    try:
        await system.start()
        async with aiohttp.ClientSession() as http:
            api = Api(http, system.url("gateway"))
            reader = await api.signup("reader")
            canvas = await api.create_canvas(reader, public=False, title="Private canvas")
        os.environ.update(system.env)
        requests = _requests(system, reader.token, reader.user_id, reader.session_id, canvas)
        for name in args.apps:
            rounds = await _one(name, requests[name], args)
            print(
                f"{name}: {statistics.median(rounds):.0f} µs CPU per request in-process "
                f"(median of {len(rounds)} rounds, {min(rounds):.0f}-{max(rounds):.0f})",
                flush=True,
            )
    finally:
        await system.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def instructions(app: str, args: argparse.Namespace) -> int:
    """Instructions per request of `app` (`--instructions`, above): callgrind's total of a run of
    2N requests less that of a run of N, over N; the two runs side by side."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")

    def start(requests: int) -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "bench.inproc", app, "--db", args.db, "--rounds", "1"]
        command += ["--requests", str(requests), "--concurrency", str(args.concurrency)]
        return subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
            env={**os.environ, "PYTHONHASHSEED": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    totals = []
    for run in [start(args.requests), start(2 * args.requests)]:
        _, err = run.communicate()
        found = re.search(r"Collected : (\d+)", err)
        if run.returncode != 0 or found is None:
            raise SystemExit(f"valgrind run failed ({run.returncode}):\n{err[-2000:]}")
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) // int(args.requests)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.splitlines()[0])
    parser.add_argument("apps", nargs="+", choices=sorted(MODULES))
    parser.add_argument("--requests", type=int, default=3000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16, help="callers at once")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per request, under valgrind (slow)"
    )
    args = parser.parse_args(argv)
    if args.instructions:
        if "--requests" not in (argv if argv is not None else sys.argv):
            args.requests = 800
        for name in args.apps:
            print(f"{name}: {instructions(name, args):,} instructions per request in-process", flush=True)
        return
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
