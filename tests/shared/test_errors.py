"""shared/errors.py maps by type, never by message text (the client chooses that text). What counts
as a database outage (503) is shared/db.py's; it reads asyncpg's own messages where a type is too broad."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar, get
from litestar.exceptions import ValidationException
from litestar.testing import TestClient

from shared.db import database_unavailable
from shared.errors import (
    AppError,
    BadGateway,
    BadRequest,
    Forbidden,
    GatewayTimeout,
    Invalid,
    MethodNotAllowed,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    _from_http,
    problem_details_plugin,
)


def test_a_refused_value_is_422_whatever_its_text_says() -> None:
    # A missing parameter's detail quotes the request's path and query, which a client chooses.
    for detail in ("Missing required query parameter 'x' for path /api/canvases?q=JSON", "decode me"):
        assert _from_http(ValidationException(detail)).status_code == 422


def test_a_connection_the_server_dropped_while_idle_is_an_outage_not_a_bug() -> None:
    # What asyncpg raises when the pool hands out a connection whose backend was terminated while it
    # sat idle (seen as a 500 in the compose fault suite): the same outage as a refused connect, 503.
    dropped = asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
    assert database_unavailable(dropped)
    # Any other internal error of asyncpg's is a bug, and stays a 500.
    assert not database_unavailable(
        asyncpg.InternalClientError("pool connection inactivity timer already exists")
    )
    # An argument the driver cannot encode is an InterfaceError too, and a bug, not an outage.
    assert not database_unavailable(asyncpg.DataError("invalid input for query argument $1"))
    assert database_unavailable(asyncpg.InterfaceError("cannot perform operation: connection is closed"))


def test_a_locked_sqlite_database_is_an_outage_by_its_result_code_not_its_text(tmp_path: Path) -> None:
    holder = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(tmp_path / "x.db", timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("SELECT * FROM t")
    assert database_unavailable(locked.value)  # SQLITE_BUSY
    with pytest.raises(sqlite3.OperationalError) as syntax:
        other.execute("SELEC")
    assert not database_unavailable(syntax.value)  # SQLITE_ERROR: a bug, 500
    # A message that merely reads like an outage is not one.
    assert not database_unavailable(sqlite3.OperationalError("database is locked"))
    holder.close()
    other.close()


def test_an_empty_body_is_named_by_where_litestar_found_it_not_by_its_text() -> None:
    # What Litestar's signature model raises for a body route called with no body.
    missing = ValidationException(
        "Validation failed", extra=[{"message": "'data'", "key": "data", "source": "body"}]
    )
    answer = _from_http(missing)
    assert answer.status_code == 422
    assert answer.extra == {"errors": [{"field": "body", "message": "a JSON object body is required"}]}
    # The same text for a query parameter is that parameter's error, as it says.
    query = ValidationException(
        "Validation failed", extra=[{"message": "'data'", "key": "q", "source": "query"}]
    )
    assert _from_http(query).extra == {"errors": [{"field": "q", "message": "'data'"}]}


@pytest.mark.parametrize(
    ("error", "status", "title", "headers", "extra"),
    [
        (BadRequest("bad"), 400, "Bad Request", {}, {}),
        (Unauthorized("who?"), 401, "Unauthorized", {"www-authenticate": "Bearer"}, {}),
        (Forbidden("no"), 403, "Forbidden", {}, {}),
        (MethodNotAllowed("GET, HEAD"), 405, "Method Not Allowed", {"allow": "GET, HEAD"}, {}),
        (PayloadTooLarge("big"), 413, "Request Entity Too Large", {}, {}),
        (UnsupportedMediaType("json"), 415, "Unsupported Media Type", {}, {}),
        (
            Invalid("title", "too long"),
            422,
            "Unprocessable Entity",
            {},
            {"errors": [{"field": "title", "message": "too long"}]},
        ),
        (
            TooManyRequests("slow", 0, headers={"RateLimit-Limit": "5"}),
            429,
            "Too Many Requests",
            {"retry-after": "1", "ratelimit-limit": "5"},
            {},
        ),
        (BadGateway("broke"), 502, "Bad Gateway", {}, {}),
        (
            Unavailable("down", retry_after=3, failed=["redis"]),
            503,
            "Service Unavailable",
            {"retry-after": "3"},
            {"failed": ["redis"]},
        ),
        (GatewayTimeout("late"), 504, "Gateway Timeout", {}, {}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, AppError) else None,
)
def test_each_app_error_leaves_as_problem_details_of_its_status(
    error: AppError, status: int, title: str, headers: dict[str, str], extra: dict[str, object]
) -> None:
    @get("/", sync_to_thread=False)
    def fail() -> None:
        raise error

    with TestClient(Litestar([fail], plugins=[problem_details_plugin()])) as client:
        reply = client.get("/")
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json() == {"status": status, "title": title, "detail": error.detail, **extra}
    assert {k: reply.headers[k] for k in headers} == headers
