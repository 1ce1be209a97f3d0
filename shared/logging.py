"""structlog setup: JSON lines in production, readable console output in development.

Both structlog and stdlib loggers (uvicorn, piccolo) go through one formatter. Every line carries
the service name and, inside a request, the request id and user id (bound in contextvars).
Values under secret-looking keys are redacted before rendering.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from shared.settings import CommonSettings, from_env

_SECRET_KEYS = frozenset({"token", "password", "currentpassword", "newpassword", "authorization", "cookie"})


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in event:
        if key.lower().replace("_", "") in _SECRET_KEYS:
            event[key] = "[redacted]"
    return event


def _formatter(service: str, *, json: bool) -> structlog.stdlib.ProcessorFormatter:
    """The one formatter of every line, structlog's and the standard library's (uvicorn, piccolo)."""

    def add_service(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    pre_chain: list[Any] = [
        add_service,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*pre_chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        foreign_pre_chain=pre_chain,
    )


def configure_logging(service: str, *, json: bool, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(service, json=json))
    logging.captureWarnings(True)  # warnings.warn (Piccolo's, asyncpg's) as log lines, not bare stderr
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def uvicorn_formatter(service: str = "uvicorn") -> logging.Formatter:
    """Formatter factory for uvicorn's `--log-config deploy/uvicorn-logging.json`.

    With `--workers N` uvicorn's supervisor never imports the app, so its own lines (start, child
    processes, SIGTERM) would bypass `configure_logging`; this renders them like every other line
    (JSON under LOG_JSON=true or APP_ENV=production), named `service` (the file says "uvicorn").
    Each worker then imports the app, whose `configure_logging` takes over with the service's name.
    """
    settings = from_env(CommonSettings)
    return _formatter(service, json=settings.json_logs)
