"""The one error mapper: every error leaves as RFC 9457 problem details (docs/architecture.md, decision 7)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from shared.validation import readable

log = structlog.get_logger()

RETRY_AFTER = 2  # seconds a client waits after a 503 for a dependency outage


class AppError(Exception):
    """An error our code raises, with its HTTP status: raise a subclass (one per status), never a
    Litestar exception or a hand-built problem. Each leaves as problem details with the status's
    standard phrase as `title`, `detail`, the headers and any `extra` members (`errors`, `failed`)."""

    status_code = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class BadRequest(AppError):
    status_code = 400


class Unauthorized(AppError):
    status_code = 401

    def __init__(self, detail: str = "Authentication required", **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("WWW-Authenticate", "Bearer")


class Forbidden(AppError):
    status_code = 403


class NotFound(AppError):
    status_code = 404


class MethodNotAllowed(AppError):
    status_code = 405

    def __init__(self, allow: str) -> None:
        super().__init__("Method Not Allowed", headers={"Allow": allow})


class Conflict(AppError):
    status_code = 409


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMediaType(AppError):
    status_code = 415


class Invalid(AppError):
    """422 naming the offending field."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class TooManyRequests(AppError):
    status_code = 429

    def __init__(self, detail: str, retry_after: int, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers={**(headers or {}), "Retry-After": str(max(1, retry_after))})


class BadGateway(AppError):
    status_code = 502


class Unavailable(AppError):
    status_code = 503

    def __init__(self, detail: str, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **extra)


class GatewayTimeout(AppError):
    status_code = 504


def _problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        title=HTTPStatus(status).phrase,
        detail=detail,
        headers=headers,
        extra=extra or None,
    )


PROBLEM_JSON = "application/problem+json"


def problem_responses(described: dict[int, str]) -> dict[int, ResponseSpec]:
    """A route's `responses=`: the OpenAPI entries for its own error answers (all problem details)."""
    return {
        status: ResponseSpec(None, description=text, media_type=PROBLEM_JSON, generate_examples=False)
        for status, text in described.items()
    }


# Error answers many routes share, for `problem_responses`.
NO_SESSION = {401: "No session in the credential"}
INVALID = {422: "Invalid body; the field is named"}


def _error_of(error: dict[str, Any]) -> dict[str, str]:
    """One of Litestar's own validation errors (a parameter, or the body missing) as `field`/`message`."""
    if error.get("key") == "data" and error.get("source") == "body":
        # An empty body reaches Litestar's signature model as a missing `data` argument.
        return {"field": "body", "message": "a JSON object body is required"}
    field = str(error.get("key") or "").removeprefix("$.") or "body"
    return {"field": field, "message": readable(str(error.get("message", "")))}


def _from_validation(exc: ValidationException) -> ProblemDetailsException:
    """Litestar's own: a parameter (or the body) its signature model refused, 422 naming it. (Bodies
    themselves are decoded by `shared.json_body.StrictBody`, which raises `Invalid`.)"""
    raw = exc.extra if isinstance(exc.extra, list) else []
    errors = [_error_of(e) for e in raw if isinstance(e, dict)]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or readable(str(exc.detail))
    status = exc.status_code if exc.status_code != 400 else 422
    return _problem(status, detail, headers=exc.headers, errors=errors)


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own (no route, wrong method, ...); our code raises `AppError`s."""
    if isinstance(exc, ValidationException):
        return _from_validation(exc)
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return _problem(exc.status_code, str(exc.detail), headers=headers, **extra)


def _from_app_error(exc: AppError) -> ProblemDetailsException:
    return _problem(exc.status_code, exc.detail, headers=exc.headers, **exc.extra)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    from shared.db import database_unavailable  # here: shared.db imports the ORM, errors is imported early
    from shared.redis import REDIS_UNAVAILABLE

    if database_unavailable(exc) or isinstance(exc, REDIS_UNAVAILABLE):
        # An outage is not a bug: one line per request (no traceback), and 503 so clients retry.
        log.warning("dependency_unavailable", path=request.url.path, error=repr(exc)[:300])
        return _problem(
            503, "A dependency of this service is unavailable", headers={"Retry-After": str(RETRY_AFTER)}
        ).to_response(request)
    log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
    return _problem(500, "Internal server error").to_response(request)


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={HTTPException: _from_http, AppError: _from_app_error},
        )
    )


EXCEPTION_HANDLERS = {Exception: _internal_error}
