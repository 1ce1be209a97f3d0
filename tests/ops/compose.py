"""Reading docker-compose.yml the way Docker Compose does (the parts the tests need)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from devtools.processes import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}")


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def interpolate(value: str, env: dict[str, str]) -> str:
    """${VAR}, ${VAR:-default} and ${VAR:?error} as Compose resolves them."""

    def repl(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op == "-":
            return arg
        raise KeyError(f"{name} is required: {arg}")

    return _VAR.sub(repl, value)


def variables(value: str) -> list[tuple[str, str | None]]:
    """The variables a string names, with their operator (`-`, `?` or None)."""
    return [(m.group(1), m.group(2)) for m in _VAR.finditer(value)]
