"""Environment-driven settings: one typed object per service, read once at start-up.

Every process reads its settings through `from_env`, which first loads, without overriding the
real environment, the optional `.env` file of the current folder and then `<DATA_DIR>/run.env`
(written by `make run`: its generated INTERNAL_SECRET, Redis URL and database URLs), so the
maintenance commands reach the system `make run` started with no extra setup.

A bad value is reported as one line per problem naming the environment variable and the form it
expects; `load_settings` prints those lines and exits with status 2 (no traceback).
"""

from __future__ import annotations

import os
import sys
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

DEV_INTERNAL_SECRET = "dev-only-insecure-internal-secret"  # noqa: S105 - refused in production
RUN_ENV = "run.env"  # the file `make run` keeps in its data folder
SETTINGS_EXIT_CODE = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(RuntimeError):
    """One or more settings are missing or invalid; the process must not start."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _read_env_file(file: Path) -> None:
    if not file.is_file():
        return
    for raw in file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.removeprefix("export ").strip(), value.strip().strip("'\""))


def load_dotenv(path: str | os.PathLike[str] = ".env", *, run_env: bool = True) -> None:
    """Load KEY=VALUE lines from `.env`, then from `<DATA_DIR>/run.env`; the real environment wins."""
    _read_env_file(Path(path))
    if run_env:
        _read_env_file(Path(os.environ.get("DATA_DIR") or "data") / RUN_ENV)


_FORMS: dict[Any, str] = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "text",
    timedelta: "seconds (900) or an ISO 8601 duration (PT15M, P30D)",
    list: 'a JSON list, e.g. ["a", "b"]',
    dict: 'a JSON object, e.g. {"key": "value"}',
}


def _expected(tp: Any) -> str:
    """How a value of type `tp` is written in an environment variable."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(arg) for arg in typing.get_args(tp) if arg is not type(None))
    return _FORMS.get(origin or tp, getattr(tp, "__name__", str(tp)))


def _shown(key: str, raw: str) -> str:
    if any(word in key for word in ("SECRET", "PASSWORD", "TOKEN")):
        return "(hidden)"
    return repr(raw if len(raw) <= 60 else raw[:57] + "...")


def _parse(key: str, raw: str, tp: Any) -> tuple[Any, str | None]:
    """The value of one variable, or the problem with it."""
    value: Any = raw
    if raw.startswith(("[", "{")) and tp is not str:
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            return None, f"{key}={_shown(key, raw)}: not valid JSON ({exc}); expected {_expected(tp)}"
    try:
        return msgspec.convert(value, tp, strict=False), None
    except msgspec.ValidationError:
        return None, f"{key}={_shown(key, raw)}: expected {_expected(tp)}"


def env_name(cls: type[msgspec.Struct], prefix: str, field: str) -> str:
    """The environment variable behind `field` of `cls` (shared fields have no prefix)."""
    shared: frozenset[str] = getattr(cls, "__shared_fields__", frozenset())
    return field.upper() if field in shared else f"{prefix}{field}".upper()


def from_env(cls: type[T], prefix: str = "", environ: typing.Mapping[str, str] | None = None) -> T:
    """Build `cls` from environment variables named PREFIX_FIELD (upper case).

    Fields listed in `cls.__shared_fields__` are read without the prefix (REDIS_URL, APP_ENV, ...).
    With no `environ`, the process environment is used after `.env` and `run.env` (see above).
    Raises SettingsError naming every invalid variable.
    """
    if environ is None:
        load_dotenv()
        environ = os.environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in msgspec.structs.fields(cls):
        key = env_name(cls, prefix, field.name)
        if key in environ:
            value, problem = _parse(key, environ[key], field.type)
            if problem:
                problems.append(problem)
            else:
                values[field.name] = value
    if problems:
        raise SettingsError(*problems)
    try:
        settings = msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:  # not expected: every field was converted above
        raise SettingsError(f"invalid settings: {exc}") from exc
    check = getattr(settings, "check", None)
    if callable(check):
        check()
    return settings


def load_settings(cls: type[T], prefix: str = "") -> T:
    """`from_env` for a process: on invalid settings print one line per problem and exit 2."""
    try:
        return from_env(cls, prefix)
    except SettingsError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"settings error: {problem}\n")
        raise SystemExit(SETTINGS_EXIT_CODE) from None


class CommonSettings(msgspec.Struct, kw_only=True):
    """Settings every process shares; service settings inherit these."""

    __shared_fields__ = frozenset({"app_env", "redis_url", "internal_secret", "log_level", "log_json"})

    app_env: Literal["development", "production"] = "development"
    redis_url: str = "redis://127.0.0.1:6379/0"
    internal_secret: str = ""
    log_level: str = "INFO"
    log_json: bool | None = None  # default: JSON in production, console in development

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @property
    def json_logs(self) -> bool:
        return self.production if self.log_json is None else self.log_json

    @property
    def secret(self) -> bytes:
        return (self.internal_secret or DEV_INTERNAL_SECRET).encode()

    def startup_warnings(self) -> list[str]:
        """What a process should log once it has configured logging."""
        if not self.internal_secret:
            return ["INTERNAL_SECRET is not set: using the fixed development key (development only)"]
        return []

    def check(self) -> None:
        if self.log_level.upper() not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={self.log_level!r}: expected one of {', '.join(LOG_LEVELS)}")
        if self.production and len(self.internal_secret) < 32:
            raise SettingsError("INTERNAL_SECRET: expected 32+ characters when APP_ENV=production")


def log_startup_warnings(settings: CommonSettings) -> None:
    import structlog

    for warning in settings.startup_warnings():
        structlog.get_logger().warning("settings_warning", problem=warning)
