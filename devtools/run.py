"""`make run`: the whole system on one machine with only Python installed.

Starts, in order: a Redis server the project owns (unless REDIS_URL is set), a local SMTP sink
(unless SMTP_URL is set: it keeps every mail under `<data folder>/mail` and prints its links here),
the migrations (SQLite files under the data folder unless *_DATABASE_URL are set), the auth service,
the outbox relay (events and mail), the canvas service (with its consumer and view flusher) and the
gateway; waits until every /ready answers and prints the URLs. Ctrl-C (or SIGTERM) stops everything
in reverse order, each process gracefully; the data folder is kept.

What it generated (INTERNAL_SECRET, the Redis and SMTP URLs, the database and service URLs) is written to
`<data folder>/run.env`, which every process's settings loader reads, so the maintenance commands
(`make migrate`, `python -m services.canvas.reconcile`, ...) reach this system with no extra setup.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from devtools.mail_sink import MailSink
from devtools.migrate import migrate
from devtools.processes import Process, uvicorn_cmd
from devtools.redis_server import RedisFailed, RedisServer
from shared.settings import RUN_ENV, load_dotenv

# The variable that moves each port, for the message when one is taken.
PORT_VARIABLES = {
    "gateway": "GATEWAY_PORT",
    "auth": "AUTH_PORT",
    "canvas": "CANVAS_PORT",
    "redis": "LOCAL_REDIS_PORT",
    "smtp": "LOCAL_SMTP_PORT",
}
CLEAN_EXITS = (0, -signal.SIGTERM, -signal.SIGINT)  # a child that stopped because it was asked to


class StartError(RuntimeError):
    """Something the user can fix (a taken port, a child that failed); printed without a traceback."""


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m devtools.run",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Each option's default comes from the environment variable named in it (or `.env`).",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(env("DATA_DIR") or "data"), help="DATA_DIR (default: data)"
    )
    for name, default in (
        ("gateway", "8000"),
        ("auth", "8001"),
        ("canvas", "8002"),
        ("redis", None),
        ("smtp", None),
    ):
        variable = PORT_VARIABLES[name]
        parser.add_argument(
            f"--{name}-port",
            type=_port,  # argparse converts a string default too, reporting a bad variable as a usage error
            default=env(variable) or default,
            help=f"{variable} (default: {default or 'a free port'})",
        )
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir.resolve()  # children and Redis run in other folders
    return args


def dev_origins(args: argparse.Namespace) -> list[str]:
    """The gateway's own pages (/schema) as a browser sees them: always allowed by `make run`."""
    return [f"http://127.0.0.1:{args.gateway_port}", f"http://localhost:{args.gateway_port}"]


def allowed_origins(args: argparse.Namespace) -> str:
    """GATEWAY_ALLOWED_ORIGINS from the environment plus the development origins."""
    configured = os.environ.get("GATEWAY_ALLOWED_ORIGINS", "").strip()
    try:
        origins = json.loads(configured) if configured else []
    except json.JSONDecodeError:
        return configured  # the gateway's settings loader names the problem
    if not isinstance(origins, list):
        return configured
    return json.dumps([*origins, *(o for o in dev_origins(args) if o not in origins)])


def base_env(args: argparse.Namespace, redis_url: str, smtp_url: str | None = None) -> dict[str, str]:
    data = args.data_dir
    defaults = {
        "APP_ENV": "development",
        "INTERNAL_SECRET": secrets.token_urlsafe(32),  # generated per run: development only
        "AUTH_DATABASE_URL": f"sqlite:///{data}/auth.db",
        "CANVAS_DATABASE_URL": f"sqlite:///{data}/canvas.db",
        "CANVAS_AUTH_URL": f"http://127.0.0.1:{args.auth_port}",
        "GATEWAY_AUTH_URL": f"http://127.0.0.1:{args.auth_port}",
        "GATEWAY_CANVAS_URL": f"http://127.0.0.1:{args.canvas_port}",
        "GATEWAY_COOKIE_SECURE": "false",  # plain HTTP on localhost
    }
    env = {key: os.environ.get(key, value) for key, value in defaults.items()}
    env["GATEWAY_ALLOWED_ORIGINS"] = allowed_origins(args)
    env["REDIS_URL"] = redis_url
    if smtp_url:
        env["SMTP_URL"] = smtp_url
    env["DATA_DIR"] = str(data)
    return env


def write_run_env(data_dir: Path, env: dict[str, str]) -> Path:
    """This run's settings for the commands run next to it (a private file: it holds the secret)."""
    path = data_dir / RUN_ENV
    lines = [
        "# Written by `make run` (python -m devtools.run) at each start: the settings of the system it",
        "# runs. Every process's settings loader reads this file after the environment and `.env`.",
        *(f"{key}={value}" for key, value in env.items() if key != "DATA_DIR"),
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def check_ports(ports: dict[str, int | None]) -> None:
    """Refuse, before starting anything, a port another program already listens on."""
    taken = []
    for name, port in ports.items():
        if port is None:
            continue
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and Redis bind
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                variable = PORT_VARIABLES[name]
                taken.append(
                    f"port {port} ({name}) is already in use by another program: stop it, or choose another "
                    f"port with {variable}=<port> (e.g. `{variable}={port + 10} make run`)"
                )
    if taken:
        raise StartError("\n".join(taken))


def announce_mail(line: str) -> None:
    """The sink's summary of a mail it kept (recipient, subject, links), on the console."""
    print(f"[mail] {line}", flush=True)


def start_all(args: argparse.Namespace) -> tuple[RedisServer | None, MailSink | None, list[Process]]:
    """Start every process; returns them in start order. Raises if one does not come up."""
    external_redis = os.environ.get("REDIS_URL")
    external_smtp = os.environ.get("SMTP_URL")
    check_ports(
        {
            "gateway": args.gateway_port,
            "auth": args.auth_port,
            "canvas": args.canvas_port,
            "redis": None if external_redis else args.redis_port,
            "smtp": None if external_smtp else args.smtp_port,
        }
    )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    logs = args.data_dir / "logs"
    redis = None
    if external_redis:
        redis_url = external_redis
    else:
        try:
            redis = RedisServer(args.data_dir / "redis", args.redis_port, appendonly=True).start()
        except (RedisFailed, TimeoutError) as exc:
            raise StartError(f"Redis did not start: {exc}") from None
        redis_url = redis.url
    sink = None
    if not external_smtp:
        try:
            sink = MailSink(args.data_dir / "mail", args.smtp_port or 0, announce=announce_mail).start()
        except Exception as exc:
            if redis:
                redis.stop()
            raise StartError(f"the local SMTP sink did not start: {exc}") from None
    env = base_env(args, redis_url, sink.url if sink else None)
    write_run_env(args.data_dir, env)

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
        migrate(env=env)
        for proc in processes:
            started.append(proc.start())
        for proc in processes:
            if proc.health_url:
                proc.wait_healthy(60, proc.health_url.replace("/health", "/ready"))
    except BaseException as exc:
        stop_all(redis, started, quiet=True, sink=sink)
        if isinstance(exc, subprocess.CalledProcessError):
            raise StartError(
                f"the migrations failed (exit {exc.returncode}); the reason is printed above"
            ) from None
        if isinstance(exc, (RuntimeError, TimeoutError)):
            raise StartError(str(exc)) from None
        raise
    return redis, sink, processes


def stop_all(
    redis: RedisServer | None, processes: list[Process], *, quiet: bool = False, sink: MailSink | None = None
) -> None:
    for proc in reversed(processes):  # gateway first, then canvas (flushes views), relay, auth
        code = proc.stop(timeout=20)
        if code not in CLEAN_EXITS:
            print(f"  {proc.name} exited with {code} (its log: {proc.log_path})", flush=True)
        elif not quiet:
            print(f"  stopped {proc.name}", flush=True)
    if sink:
        sink.stop()
        if not quiet:
            print("  stopped mail sink", flush=True)
    if redis:
        redis.stop()
        if not quiet:
            print("  stopped redis", flush=True)


def restart_redis(redis: RedisServer) -> bool:
    """Redis died under the running system: start it again from its append-only file on the same
    port (the services reconnect by themselves; until then their answers that need it are 503)."""
    print(f"redis exited unexpectedly; its log ({redis.log_path}):\n{redis.tail(5)}", flush=True)
    try:
        redis.start()
    except (RedisFailed, TimeoutError) as exc:
        print(f"redis did not start again ({exc}); stopping the others", flush=True)
        return False
    print("redis restarted from its append-only file", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    load_dotenv(run_env=False)  # run.env is this command's output, not its input
    args = parse_args(argv)
    print(f"Starting Canvas-Verse (data in {args.data_dir}) ...", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # like Ctrl-C: stop what has started
    try:
        # Ctrl-C here: KeyboardInterrupt, everything started is stopped.
        redis, sink, processes = start_all(args)
    except StartError as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("Stopped before it was running.", flush=True)
        return 130
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    gateway = f"http://127.0.0.1:{args.gateway_port}"
    mail = (
        f"{sink.url}, kept in {sink.folder}; each mail's links are printed here"
        if sink
        else f"sent to {os.environ['SMTP_URL']}"
    )
    print(
        f"\nCanvas-Verse is running.\n  API:      {gateway}/api\n  API docs: {gateway}/schema\n"
        f"  Logs:     {args.data_dir / 'logs'}\n"
        f"  Mail:     {mail}\n"
        f"  Settings: {args.data_dir / RUN_ENV} (read by make migrate and the python -m commands)\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )
    status = 0
    while not stop.wait(1):
        if redis and not redis.running and not restart_redis(redis):
            status = 1
            break
        dead = [p for p in processes if not p.running]
        if dead:
            for proc in dead:
                print(
                    f"{proc.name} exited unexpectedly; its log ({proc.log_path}):\n{proc.tail(15)}",
                    flush=True,
                )
            print("stopping the others", flush=True)
            status = 1
            break
    print("Stopping ...", flush=True)
    stop_all(redis, processes, sink=sink)
    return status


if __name__ == "__main__":
    sys.exit(main())
