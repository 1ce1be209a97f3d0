"""12. ASGI servers: the same apps under our server and the other ASGI servers, side by side (issue 18)."""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bench import wrk
from bench.context import Context
from bench.load import Target, cpu_rounds, side_by_side
from bench.report import Outcome, Run, _table
from bench.scenarios.base import Scenario, check_errors
from devtools.processes import KEEP_ALIVE, Process, uvicorn_cmd
from devtools.redis_server import free_port

CONNECTIONS = 64
HOST = "127.0.0.1"
REQUEST_ID = "bench-0123456789abcdef"  # as the gateway sends it on every call to a service
OURS = "ours"


def _ours(app: str, port: int) -> list[str]:
    return uvicorn_cmd(app, port, workers=1)


def _uvicorn(app: str, port: int) -> list[str]:
    return [
        *[sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port), "--workers", "1"],
        *["--loop", "uvloop", "--http", "httptools", "--timeout-keep-alive", str(KEEP_ALIVE)],
        *["--no-access-log", "--no-proxy-headers"],
    ]


def _granian(app: str, port: int) -> list[str]:
    return [
        *[sys.executable, "-m", "granian", "--interface", "asgi", "--host", HOST, "--port", str(port)],
        *["--workers", "1", "--runtime-threads", "1", "--runtime-mode", "st", "--loop", "uvloop"],
        *["--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning", app],
    ]


def _hypercorn(app: str, port: int) -> list[str]:
    return [
        *[sys.executable, "-m", "hypercorn", app, "--bind", f"{HOST}:{port}", "--workers", "1"],
        *["--worker-class", "uvloop", "--keep-alive", str(KEEP_ALIVE), "--log-level", "warning"],
    ]


@dataclass(frozen=True)
class Server:
    name: str
    module: str  # the package that must be installed (the `bench` extra brings the others)
    command: Callable[[str, int], list[str]]


SERVERS = (
    Server(OURS, "uvicorn", _ours),
    Server("uvicorn", "uvicorn", _uvicorn),
    Server("granian", "granian", _granian),
    Server("hypercorn", "hypercorn", _hypercorn),
)


def installed() -> list[Server]:
    return [s for s in SERVERS if importlib.util.find_spec(s.module) is not None]


@dataclass(frozen=True)
class App:
    name: str
    target: str  # module:attribute
    path: str


def _watch_name(server: Server) -> str:
    return f"srv-{server.name}"


async def _measure_app(
    ctx: Context,
    app: App,
    servers: list[Server],
    env: Mapping[str, str],
    requests: Callable[[], list[wrk.Request]],
) -> list[Run]:
    started: list[tuple[Server, Process, str]] = []
    try:
        for server in servers:
            port = free_port()
            base = f"http://{HOST}:{port}"
            proc = Process(
                f"{app.name}-{server.name}",
                server.command(app.target, port),
                env,
                ctx.system.log_dir / f"s12-{app.name}-{server.name}.log",
                f"{base}/health",
            )
            started.append((server, proc, base))
            await asyncio.to_thread(proc.start, 60)
            assert proc.proc is not None
            ctx.system.also_watched[_watch_name(server)] = proc.proc.pid
        targets = [Target(f"{app.name}: {server.name}", base, requests) for server, _, base in started]
        return await side_by_side(ctx, targets, CONNECTIONS)
    finally:
        for server, proc, _ in reversed(started):
            ctx.system.also_watched.pop(_watch_name(server), None)
            await asyncio.to_thread(proc.stop, 20)


TABLE = (
    "server",
    "req/s (median round)",
    "req/s rounds",
    "CPU µs/req (median)",
    "CPU µs/req rounds",
    "req/s / ours",
    "CPU / ours",
)


def _cpu_us(run: Run, server: Server) -> list[float]:
    return [ms * 1000 for ms in cpu_rounds(run, _watch_name(server))]


def table(app: App, servers: list[Server], runs: list[Run]) -> list[str]:
    """One row per server: its median round's req/s, its median CPU µs per request (of the server
    process and its children) and the spread of both over the rounds, each beside ours."""
    by_name = dict(zip((s.name for s in servers), runs, strict=True))
    ours = by_name.get(OURS)
    ours_cpu = statistics.median(_cpu_us(ours, SERVERS[0])) if ours and _cpu_us(ours, SERVERS[0]) else 0.0
    rows: list[list[object]] = []
    for server, run in zip(servers, runs, strict=True):
        rps = [r.rps for r in run.rounds or [run]]
        cpu = _cpu_us(run, server)
        cpu_median = statistics.median(cpu) if cpu else 0.0
        rows.append(
            [
                server.name,
                f"{run.rps:,.0f}",
                f"{min(rps):,.0f}-{max(rps):,.0f}",
                f"{cpu_median:.0f}",
                f"{min(cpu):.0f}-{max(cpu):.0f}" if cpu else "-",
                f"{run.rps / ours.rps:.2f}x" if ours and ours.rps else "-",
                f"{cpu_median / ours_cpu:.2f}x" if ours_cpu else "-",
            ]
        )
    return [f"{app.name} (`GET {app.path}`):", "", *(f"  {line}" for line in _table(TABLE, rows))]


def _median_cpu(run: Run, server: Server) -> float:
    cpu = _cpu_us(run, server)
    return statistics.median(cpu) if cpu else 0.0


async def run(ctx: Context, out: Outcome) -> None:
    servers = installed()
    missing = [s.name for s in SERVERS if s not in servers]
    if missing:
        out.notes.append(
            f"Not installed, left out: {', '.join(missing)} "
            "(`pip install -e '.[bench]'`, as `make install` does)."
        )
    public = f"/api/canvases/{ctx.fixtures.public_canvas}"

    def canvas_read() -> list[wrk.Request]:
        headers = {"X-Internal-Auth": ctx.system.credential(), "X-Request-Id": REQUEST_ID}
        return [wrk.Request(public, headers=headers)]

    def gateway_read() -> list[wrk.Request]:
        return [wrk.Request(public, headers=ctx.fixtures.reader.bearer)]

    plan = [
        (App("floor", "bench.floorapp:app", "/empty"), {}, lambda: [wrk.Request("/empty")]),
        (App("canvas", "bench.served_canvas:app", "/api/canvases/{public}"), ctx.system.env, canvas_read),
        (App("gateway", "bench.served_gateway:app", "/api/canvases/{public}"), ctx.system.env, gateway_read),
    ]
    results: list[tuple[App, list[Run]]] = []
    for app, env, requests in plan:
        runs = await _measure_app(ctx, app, servers, env, requests)
        results.append((app, runs))
        out.runs += runs
    for app, runs in results:
        out.notes.append("\n".join(table(app, servers, runs)))
    floor_runs = results[0][1]
    canvas_runs = results[1][1]
    ours_cpu = _median_cpu(canvas_runs[0], servers[0])
    others = [(s, _median_cpu(r, s)) for s, r in zip(servers[1:], canvas_runs[1:], strict=True)]
    out.ours = f"floor {_median_cpu(floor_runs[0], servers[0]):.0f} µs/req, canvas {ours_cpu:.0f} µs/req"
    if others and ours_cpu:
        best, best_cpu = min(others, key=lambda pair: pair[1])
        out.reference = f"{best.name}: canvas {best_cpu:.0f} µs/req"
        out.ratio = best_cpu / ours_cpu
        out.ratio_of = "the cheapest other server's CPU per canvas read / ours (median rounds)"
        canvas_cpu = _cpu_us(canvas_runs[servers.index(best)], best)
        out.rounds = f"{len(canvas_cpu)} rounds {min(canvas_cpu):.0f}-{max(canvas_cpu):.0f} µs ({best.name})"
    out.judge(len(servers) == len(SERVERS))
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=12,
    title="ASGI servers",
    goal="every server measured on every app (a comparison: the choice is in bench/FINDINGS.md)",
    doc=f"""
The same apps served by each ASGI server in one process (one worker), the same wrk load
({CONNECTIONS} connections), the servers measured side by side in alternating order each round:
ours (uvicorn with `shared.server:LimitedHttpToolsProtocol` and uvloop, the services' command); plain
uvicorn with httptools and uvloop; granian (`--interface asgi`, 1 worker, 1 single-threaded runtime
thread, uvloop); hypercorn (1 worker, the uvloop worker class). A server that is not installed is
left out (the `bench` extra of pyproject.toml brings granian and hypercorn). The apps:
`bench/floorapp.py`'s empty route; the canvas service's cached public-canvas read
(`GET /api/canvases/{{id}}`, the anonymous internal credential and a request id as the gateway sends
them; the same databases and Redis as the running system); and the gateway's proxied read of the same
canvas (the reader's Bearer token, the session in the gateway's Redis cache, proxied to the running
system's canvas service on our server: only the gateway's server process counts). Per app, a
table: each server's median round's req/s and its median CPU µs per request (server process and its
children, from /proc), the
spread over the rounds, and both beside ours. The limits each server can or cannot give are in
bench/FINDINGS.md ("ASGI servers side by side").
""",
)
