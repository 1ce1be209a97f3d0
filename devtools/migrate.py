"""Apply every service's Piccolo migrations (`make migrate`, the compose migration job, tests).

Each service's database comes from AUTH_DATABASE_URL / CANVAS_DATABASE_URL (the environment, `.env`,
or the `run.env` that `make run` keeps in the data folder); a SQLite file's folder is created.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from devtools.processes import ROOT

APPS = {"auth": "services.auth.piccolo_conf", "canvas": "services.canvas.piccolo_conf"}
DEFAULT_URLS = {"auth": "sqlite:///data/auth.db", "canvas": "sqlite:///data/canvas.db"}


def sqlite_file(url: str) -> Path | None:
    """The file of a `sqlite:///path` URL (relative paths are the repository's), else None."""
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///"))
    return path if path.is_absolute() else ROOT / path


def migrate(apps: list[str] | None = None, env: Mapping[str, str] | None = None, *, log: Any = None) -> None:
    """Run Piccolo's `migrations forwards` per app. With `log` (a structlog logger), Piccolo's output
    becomes one log line per line (JSON under LOG_JSON, as in compose) instead of its own prints."""
    full = {**os.environ, **(env or {})}
    for app in list(APPS) if apps is None else apps:
        file = sqlite_file(full.get(f"{app.upper()}_DATABASE_URL") or DEFAULT_URLS[app])
        if file:
            file.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [sys.executable, "-m", "piccolo.main", "migrations", "forwards", app],
            env={**full, "PICCOLO_CONF": APPS[app]},
            cwd=ROOT,
            capture_output=log is not None,
            text=True,
            check=False,
        )
        if log is not None:
            for line in f"{done.stdout}\n{done.stderr}".splitlines():
                if line.strip():
                    (log.info if done.returncode == 0 else log.error)("migration_output", app=app, line=line)
        done.check_returncode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.migrate",
        description="Apply the Piccolo migrations of each service to its database "
        "(AUTH_DATABASE_URL, CANVAS_DATABASE_URL).",
    )
    parser.add_argument("apps", nargs="*", metavar="APP", help="auth or canvas (default: both)")
    args = parser.parse_args(argv)
    unknown = [app for app in args.apps if app not in APPS]
    if unknown:
        parser.error(f"unknown app {', '.join(unknown)} (choose from {', '.join(APPS)})")
    from shared.logging import configure_logging
    from shared.settings import CommonSettings, from_env, load_dotenv

    load_dotenv()
    settings = from_env(CommonSettings)
    configure_logging("migrate", json=settings.json_logs, level=settings.log_level)
    log = structlog.get_logger()
    try:
        migrate(args.apps or None, log=log)
    except subprocess.CalledProcessError as exc:
        log.error("migration_failed", exit=exc.returncode)  # Piccolo's message is logged above
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
