"""The one error mapper: every error leaves as RFC 9457 problem details (docs/architecture.md, decision 7)."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, ValidationException
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
    """A domain error with its HTTP status; raise a subclass from service modules."""

    status_code = 400
    title: str | None = None

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


class Conflict(AppError):
    status_code = 409


class Invalid(AppError):
    """422 naming the offending field."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", errors=[{"field": field, "message": message}])


class TooManyRequests(AppError):
    status_code = 429

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class Unavailable(AppError):
    status_code = 503

    def __init__(self, detail: str, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **extra)


def problem(
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


def _field_of(error: dict[str, Any]) -> str:
    """The offending field: msgspec's `$.field` path, or the name in "... field `name`"."""
    key = str(error.get("key") or "").removeprefix("$.")
    if key and key != "data":
        return key
    named = re.search(r"field `([^`]+)`", str(error.get("message", "")))
    return named.group(1) if named else "body"


def _message_of(error: dict[str, Any]) -> str:
    message = readable(str(error.get("message", "")))
    # An empty body reaches Litestar's signature model as a missing `data` argument.
    return "a JSON object body is required" if message == "'data'" else message


def _from_validation(exc: ValidationException) -> ProblemDetailsException:
    raw = exc.extra if isinstance(exc.extra, list) else []
    errors = [{"field": _field_of(e), "message": _message_of(e)} for e in raw if isinstance(e, dict)]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or readable(str(exc.detail))
    # A body that is not JSON never gets here (shared/json_body.py answers 400 first; a DTO's decode
    # error is a ClientException): a ValidationException is a value the schema refused, 422.
    status = exc.status_code if exc.status_code != 400 else 422
    return problem(status, detail, headers=exc.headers, errors=errors)


def _from_http(exc: HTTPException) -> ProblemDetailsException:
    if isinstance(exc, ValidationException):
        return _from_validation(exc)
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException) or exc.status_code == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    extra = exc.extra if isinstance(exc.extra, dict) else {}
    return problem(exc.status_code, str(exc.detail), headers=headers, **extra)


def _from_app_error(exc: AppError) -> ProblemDetailsException:
    return problem(exc.status_code, exc.detail, headers=exc.headers, **exc.extra)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    from shared.db import database_unavailable  # here: shared.db imports the ORM, errors is imported early
    from shared.redis import REDIS_UNAVAILABLE

    if database_unavailable(exc) or isinstance(exc, REDIS_UNAVAILABLE):
        # An outage is not a bug: one line per request (no traceback), and 503 so clients retry.
        log.warning("dependency_unavailable", path=request.url.path, error=repr(exc)[:300])
        return problem(
            503, "A dependency of this service is unavailable", headers={"Retry-After": str(RETRY_AFTER)}
        ).to_response(request)
    log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
    return problem(500, "Internal server error").to_response(request)


def problem_details_plugin() -> ProblemDetailsPlugin:
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            exception_to_problem_detail_map={HTTPException: _from_http, AppError: _from_app_error},
        )
    )


EXCEPTION_HANDLERS = {Exception: _internal_error}
