"""Environment-driven settings: one typed object per service, read once at start-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)

DEV_INTERNAL_SECRET = "dev-only-insecure-internal-secret"  # noqa: S105 - refused in production


class SettingsError(RuntimeError):
    """A setting is missing or invalid; the process must not start."""


def load_dotenv(path: str | os.PathLike[str] = ".env") -> None:
    """Load KEY=VALUE lines from an optional `.env` file without overriding the real environment."""
    file = Path(path)
    if not file.is_file():
        return
    for raw in file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def from_env(cls: type[T], prefix: str = "", environ: dict[str, str] | None = None) -> T:
    """Build `cls` from environment variables named PREFIX_FIELD (upper case).

    Fields listed in `cls.__shared_fields__` are read without the prefix (REDIS_URL, APP_ENV, ...).
    """
    env = os.environ if environ is None else environ
    shared: frozenset[str] = getattr(cls, "__shared_fields__", frozenset())
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        key = field.name.upper() if field.name in shared else f"{prefix}{field.name}".upper()
        if key in env:
            raw = env[key]
            values[field.name] = msgspec.json.decode(raw) if raw[:1] in "[{" else raw
    try:
        settings = msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid setting: {exc}") from exc
    check = getattr(settings, "check", None)
    if callable(check):
        check()
    return settings


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

    def check(self) -> None:
        if self.production and len(self.internal_secret) < 32:
            raise SettingsError("INTERNAL_SECRET must be set (32+ characters) when APP_ENV=production")
