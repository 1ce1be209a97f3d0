"""Apply every service's Piccolo migrations (`make migrate`, the compose migration job, tests).

Usage: python -m devtools.migrate [auth] [canvas]
"""

from __future__ import annotations

import os
import subprocess
import sys

from devtools.processes import ROOT

APPS = {"auth": "services.auth.piccolo_conf", "canvas": "services.canvas.piccolo_conf"}


def migrate(apps: list[str] | None = None, env: dict[str, str] | None = None) -> None:
    for app in list(APPS) if apps is None else apps:
        subprocess.run(
            [sys.executable, "-m", "piccolo.main", "migrations", "forwards", app],
            env={**os.environ, **(env or {}), "PICCOLO_CONF": APPS[app]},
            cwd=ROOT,
            check=True,
        )


if __name__ == "__main__":
    migrate(sys.argv[1:] or None)
