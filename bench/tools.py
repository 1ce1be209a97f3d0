"""The external programs the harness drives: wrk and nginx (Debian packages `wrk`, `nginx-light`).

Missing ones are installed with apt-get when the harness runs as root; otherwise the scenarios that
need them are skipped with a note saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PACKAGES = {"wrk": "wrk", "nginx": "nginx-light"}
_SBIN = (Path("/usr/sbin"), Path("/usr/local/sbin"))


def find(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for folder in _SBIN:
        if (folder / program).is_file():
            return str(folder / program)
    return None


@dataclass
class Tools:
    paths: dict[str, str]
    missing: dict[str, str]  # program -> why it is not there

    def path(self, program: str) -> str | None:
        return self.paths.get(program)

    def why_missing(self, *programs: str) -> str | None:
        reasons = [f"{p}: {self.missing[p]}" for p in programs if p in self.missing]
        return "; ".join(reasons) or None


def _apt_install(package: str) -> str | None:
    """None on success, else what went wrong."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", package]
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:  # an old or empty package list: refresh once and retry
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"`apt-get install -y {package}` failed: {result.stderr.strip()[-300:]}"
    return None


def ensure(programs: tuple[str, ...] = ("wrk", "nginx")) -> Tools:
    tools = Tools(paths={}, missing={})
    for program in programs:
        path = find(program)
        if path is None:
            package = PACKAGES[program]
            if os.geteuid() != 0 or shutil.which("apt-get") is None:
                tools.missing[program] = f"not installed (install the Debian package `{package}` as root)"
                continue
            print(f"installing {package} ...", flush=True)
            error = _apt_install(package)
            path = find(program)
            if path is None:
                tools.missing[program] = error or f"`{package}` installed but `{program}` not found"
                continue
        tools.paths[program] = path
    return tools
