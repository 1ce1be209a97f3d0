"""shared/errors.py maps by type, never by message text (the client chooses that text). What counts
as a database outage (503) is shared/db.py's; it reads asyncpg's own messages where a type is too broad."""

from __future__ import annotations

import asyncpg
from litestar.exceptions import ValidationException

from shared.db import database_unavailable
from shared.errors import _from_http


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
