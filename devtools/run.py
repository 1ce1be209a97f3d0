"""`make run`: the whole system on one machine with only Python installed.

Starts, in order: a Redis server the project owns (unless REDIS_URL is set), the migrations (SQLite
files under the data folder unless *_DATABASE_URL are set), the auth service, the outbox relay, the
canvas service (with its consumer and view flusher) and the gateway; waits until every /ready answers
and prints the URLs. Ctrl-C (or SIGTERM) stops everything in reverse order, each process gracefully.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

from devtools.migrate import migrate
from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import RedisServer
from shared.settings import load_dotenv


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(env("DATA_DIR", "data")))
    parser.add_argument("--gateway-port", type=int, default=int(env("GATEWAY_PORT", "8000")))
    parser.add_argument("--auth-port", type=int, default=int(env("AUTH_PORT", "8001")))
    parser.add_argument("--canvas-port", type=int, default=int(env("CANVAS_PORT", "8002")))
    parser.add_argument("--redis-port", type=int, default=int(env("LOCAL_REDIS_PORT", "0")) or None)
    return parser.parse_args(argv)


def base_env(args: argparse.Namespace, redis_url: str) -> dict[str, str]:
    data = args.data_dir.resolve()
    gateway = f"http://127.0.0.1:{args.gateway_port}"
    defaults = {
        "APP_ENV": "development",
        "INTERNAL_SECRET": secrets.token_urlsafe(32),  # generated per run: development only
        "AUTH_DATABASE_URL": f"sqlite:///{data}/auth.db",
        "CANVAS_DATABASE_URL": f"sqlite:///{data}/canvas.db",
        "CANVAS_AUTH_URL": f"http://127.0.0.1:{args.auth_port}",
        "GATEWAY_AUTH_URL": f"http://127.0.0.1:{args.auth_port}",
        "GATEWAY_CANVAS_URL": f"http://127.0.0.1:{args.canvas_port}",
        "GATEWAY_COOKIE_SECURE": "false",  # plain HTTP on localhost
        "GATEWAY_ALLOWED_ORIGINS": f'["{gateway}", "http://localhost:{args.gateway_port}"]',
    }
    env = {key: os.environ.get(key, value) for key, value in defaults.items()}
    env["REDIS_URL"] = redis_url
    return env


def start_all(args: argparse.Namespace) -> tuple[RedisServer | None, list[Process]]:
    """Start every process; returns them in start order. Raises if one does not come up."""
    args.data_dir.mkdir(parents=True, exist_ok=True)
    logs = args.data_dir / "logs"
    redis = None
    if "REDIS_URL" in os.environ:
        redis_url = os.environ["REDIS_URL"]
    else:
        redis = RedisServer(args.data_dir / "redis", args.redis_port, appendonly=True).start()
        redis_url = redis.url
    env = base_env(args, redis_url)
    migrate(env=env)

    def service(name: str, app: str, port: int) -> Process:
        url = f"http://127.0.0.1:{port}"
        return Process(name, uvicorn_cmd(app, port), env, logs / f"{name}.log", f"{url}/health")

    processes = [
        service("auth", "services.auth.app:app", args.auth_port),
        Process("relay", [sys.executable, "-m", "services.auth.relay"], env, logs / "relay.log"),
        service("canvas", "services.canvas.app:app", args.canvas_port),
        service("gateway", "gateway.app:app", args.gateway_port),
    ]
    started: list[Process] = []
    try:
        for proc in processes:
            started.append(proc.start())
        for proc in processes:
            if proc.health_url:
                proc.wait_healthy(60, proc.health_url.replace("/health", "/ready"))
    except BaseException:
        stop_all(redis, started)
        raise
    return redis, processes


def stop_all(redis: RedisServer | None, processes: list[Process]) -> None:
    for proc in reversed(processes):  # gateway first, then canvas (flushes views), relay, auth
        code = proc.stop(timeout=20)
        print(f"  stopped {proc.name} (exit {code})", flush=True)
    if redis:
        redis.stop()
        print("  stopped redis", flush=True)


def main(argv: list[str] | None = None) -> int:
    load_dotenv()
    args = parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"Starting Canvas-Verse (data in {args.data_dir.resolve()}) ...", flush=True)
    redis, processes = start_all(args)
    gateway = f"http://127.0.0.1:{args.gateway_port}"
    print(
        f"\nCanvas-Verse is running.\n  API:      {gateway}/api\n  API docs: {gateway}/schema\n"
        f"  Logs:     {args.data_dir.resolve() / 'logs'}\nPress Ctrl-C to stop.\n",
        flush=True,
    )
    status = 0
    while not stop.wait(1):
        dead = [p.name for p in processes if not p.running]
        if dead:
            print(f"process exited unexpectedly: {', '.join(dead)}; stopping", flush=True)
            status = 1
            break
    print("Stopping ...", flush=True)
    stop_all(redis, processes)
    return status


if __name__ == "__main__":
    sys.exit(main())
