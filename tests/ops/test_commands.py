"""Every command the READMEs show follows one convention (argparse's; `shared.serve` is uvicorn's
click command line, which prints "Usage:" capitalised): `--help` prints usage and exits 0
with no side effect, an unknown argument is a usage error (exit 2). Bad settings stop a process with
one line per variable and exit 2, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.processes import ROOT
from devtools.redis_server import free_port

PARTS = (".", "gateway", "services/auth", "services/canvas", "shared", "devtools", "bench", "docs")
READMES = [ROOT / part / "README.md" for part in PARTS if (ROOT / part / "README.md").is_file()]
READMES += sorted((ROOT / "docs").glob("*.md"))  # the project's own documentation shows commands too
# `python -m module` and, for a command with subcommands, the first word after it.
COMMAND = re.compile(r"python -m ([a-z_][a-z_.]*)((?: [a-z]+)?)")
NOT_IN_DOCS = ["devtools.pgcheck"]  # `make test` runs it


def documented_commands() -> list[tuple[str, ...]]:
    found: set[tuple[str, ...]] = {(module,) for module in NOT_IN_DOCS}
    for readme in READMES:
        for module, word in COMMAND.findall(readme.read_text()):
            found.add((module, *word.split()))
    return sorted(found)


def test_the_readmes_show_the_commands_we_expect() -> None:
    modules = {command[0] for command in documented_commands()}
    assert {"devtools.run", "devtools.migrate", "devtools.settings_doc", "bench"} <= modules
    assert {"services.canvas.reconcile", "services.canvas.deadletters", "services.auth.relay"} <= modules


def _isolated_env(tmp: Path) -> dict[str, str]:
    """Everything a command could touch points into `tmp` (and Redis at a closed port)."""
    return {
        **os.environ,
        "DATA_DIR": str(tmp),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "AUTH_DATABASE_URL": f"sqlite:///{tmp}/auth.db",
        "CANVAS_DATABASE_URL": f"sqlite:///{tmp}/canvas.db",
        "CANVAS_AUTH_URL": f"http://127.0.0.1:{free_port()}",
    }


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", documented_commands(), ids=" ".join)
def test_help_prints_usage_and_does_nothing_else(command: tuple[str, ...], tmp_path: Path) -> None:
    result = _run([*command, "--help"], _isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.lower().startswith("usage: ")
    assert result.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no database, no log, no data folder


@pytest.mark.parametrize("command", documented_commands(), ids=" ".join)
def test_an_unknown_argument_is_a_usage_error(command: tuple[str, ...], tmp_path: Path) -> None:
    result = _run([*command, "--no-such-option"], _isolated_env(tmp_path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "usage: " in result.stderr.lower()
    assert "error: " in result.stderr.lower()  # "unrecognized arguments", or the subcommand it lacks
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("CANVAS_DB_POOL_SIZE", "ten", "CANVAS_DB_POOL_SIZE='ten': expected an integer"),
        ("CANVAS_RUN_BACKGROUND", "maybe", "CANVAS_RUN_BACKGROUND='maybe': expected true or false"),
        ("APP_ENV", "prod", "APP_ENV='prod': expected one of development, production"),
        ("CANVAS_RECONCILE_BATCH", "[1, 2", "CANVAS_RECONCILE_BATCH='[1, 2': not valid JSON"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    result = _run(["services.canvas.reconcile", "--dry-run"], {**_isolated_env(tmp_path), variable: value})
    assert result.returncode == 2
    assert result.stderr.startswith(f"settings error: {expected}")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_every_bad_setting_is_named_at_once_and_uvicorn_shows_no_traceback(tmp_path: Path) -> None:
    env = {
        **_isolated_env(tmp_path),
        "GATEWAY_ALLOWED_ORIGINS": '["https://ok.example"',
        "GATEWAY_TRUSTED_PROXIES": "10.0.0.1",
        "GATEWAY_RATE_LIMIT_UNIT": "week",
    }
    result = _run(["uvicorn", "gateway.app:app", "--port", str(free_port())], env)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "settings error: GATEWAY_ALLOWED_ORIGINS",
        "settings error: GATEWAY_RATE_LIMIT_UNIT",
        "settings error: GATEWAY_TRUSTED_PROXIES",
    ]
    assert "expected a JSON list" in lines[0]
    assert "expected one of second, minute, hour, day" in lines[1]
    assert "Traceback" not in result.stderr


def test_development_without_internal_secret_logs_a_warning(tmp_path: Path) -> None:
    env = {**_isolated_env(tmp_path), "INTERNAL_SECRET": "", "LOG_LEVEL": "INFO"}
    result = subprocess.run(
        [sys.executable, "-c", "from gateway.app import app"],  # what uvicorn does first
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "INTERNAL_SECRET is not set: using the fixed development key" in result.stderr


def test_dead_letters_list_says_when_there_are_none(tmp_path: Path) -> None:
    result = _run(["services.canvas.deadletters", "list", "0-1"], {**os.environ, "DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "no dead letters with those ids in user-events:dead\n")


def test_a_maintenance_command_with_redis_down_says_so_in_one_line(tmp_path: Path) -> None:
    result = _run(["services.canvas.deadletters", "list"], _isolated_env(tmp_path))  # Redis: a closed port
    assert result.returncode == 1
    assert "did not answer" in result.stderr
    assert "is the system running?" in result.stderr
    assert "Traceback" not in result.stderr
