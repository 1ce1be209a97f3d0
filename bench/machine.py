"""What the report says about where it ran: the machine, the software versions, the load around it."""

from __future__ import annotations

import os
import platform
import re
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

# distribution -> name in the report
PYTHON_PACKAGES = {
    "litestar": "litestar",
    "piccolo": "piccolo",
    "msgspec": "msgspec",
    "uvicorn": "uvicorn",
    "uvloop": "uvloop",
    "aiohttp": "aiohttp",
    "redis": "redis-py",
    "asyncpg": "asyncpg",
    "aiosqlite": "aiosqlite",
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine() -> str:
    mem = memory_gib()
    memory = f", {mem:.0f} GiB RAM" if mem else ""
    return f"{os.cpu_count()} CPUs ({cpu_model()}){memory}, {platform.system()} {platform.release()}"


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def program_version(cmd: list[str], pattern: str) -> str:
    line = _first_line(cmd)
    if line is None:
        return "not installed"
    found = re.search(pattern, line)
    return found.group(1) if found else line


def versions(*, redis_server: str, postgres: str | None, wrk: str | None, nginx: str | None) -> list[str]:
    found = [f"Python {platform.python_version()}"]
    for package, name in PYTHON_PACKAGES.items():
        try:
            found.append(f"{name} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    redis_version = program_version([redis_server, "--version"], r"v=(\S+)")
    nginx_version = program_version([nginx, "-v"], r"nginx/(\S+)") if nginx else "not installed"
    wrk_version = program_version([wrk, "-v"], r"wrk (\S+)") if wrk else "not installed"
    found += [
        f"SQLite {sqlite3.sqlite_version}",
        f"redis-server {redis_version}",
        f"PostgreSQL {postgres or 'not used'}",
        f"nginx {nginx_version}",
        f"wrk {wrk_version}",
    ]
    return found
