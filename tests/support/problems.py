"""Asserting a problem-details answer (RFC 9457), from either of the tests' clients."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.http import Reply

PROBLEM_JSON = "application/problem+json"


def assert_problem(
    reply: Reply | httpx.Response,
    status: int,
    field: str | None = None,
    *,
    what: object = None,
    new_request_id: bool = False,
) -> dict[str, Any]:
    """`reply` is problem details with this status, a title and a detail; naming `field` among its
    `errors` when given; with a new UUID as X-Request-Id when `new_request_id`. The body."""
    code, text = (
        (reply.status, reply.body[:300]) if isinstance(reply, Reply) else (reply.status_code, reply.text)
    )
    assert code == status, (what, code, text)
    assert reply.headers["Content-Type"].startswith(PROBLEM_JSON), what
    body: dict[str, Any] = reply.json()
    assert body["status"] == status, (what, body)
    assert body["title"], body
    assert body["detail"], body
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    if new_request_id:
        uuid.UUID(reply.headers["X-Request-Id"])
    return body
