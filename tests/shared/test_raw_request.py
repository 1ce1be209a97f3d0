"""shared/server.py's `_raw_request`: which bytes the raw refusal path may answer without the HTTP
parser. Anything it is not sure of goes to the parser (None), which answers the same."""

from __future__ import annotations

import pytest

from shared.server import MAX_HEADER_BYTES, _raw_request

TARGETS = frozenset({b"POST /api/auth/login", b"DELETE /api/users/me"})
BODY = b'{"email": "a@example.com", "password": "x"}'


def request(
    line: bytes = b"POST /api/auth/login HTTP/1.1", headers: bytes = b"", body: bytes = BODY
) -> bytes:
    head = line + b"\r\nHost: t\r\nContent-Type: application/json\r\n" + headers
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_one_whole_request_to_a_target_is_read_with_its_request_id() -> None:
    assert _raw_request(request(), TARGETS) == (b"POST /api/auth/login", b"")
    with_id = request(headers=b"X-Request-ID:  flood-1 \r\n")
    assert _raw_request(with_id, TARGETS) == (b"POST /api/auth/login", b"flood-1")
    empty = request(b"DELETE /api/users/me HTTP/1.1", body=b"")
    assert _raw_request(empty, TARGETS) == (b"DELETE /api/users/me", b"")


@pytest.mark.parametrize(
    ("case", "data"),
    [
        ("another route", request(b"POST /api/auth/signup HTTP/1.1")),
        ("another method", request(b"PUT /api/auth/login HTTP/1.1")),
        ("a query string", request(b"POST /api/auth/login?x=1 HTTP/1.1")),
        ("another spelling", request(b"POST /api/auth//login HTTP/1.1")),
        ("HTTP/1.0", request(b"POST /api/auth/login HTTP/1.0")),
        ("a short line", b"GET / HTTP/1.1\r\n\r\n"),
        ("no CRLF at all", b"POST /api/auth/login HTTP/1.1"),
        ("the head not complete", request()[:40]),
        ("the body not complete", request()[:-3]),
        ("a second request behind it", request() * 2),
        ("a byte more", request() + b"x"),
        ("no Content-Length", request().replace(b"Content-Length", b"X-Length")),
        ("two Content-Length", request(headers=b"Content-Length: %d\r\n" % len(BODY))),
        (
            "a Content-Length that is not a number",
            request().replace(b"Length: %d" % len(BODY), b"Length: -1"),
        ),
        ("chunked", request(headers=b"Transfer-Encoding: chunked\r\n")),
        ("Connection", request(headers=b"Connection: close\r\n")),
        ("Expect", request(headers=b"Expect: 100-continue\r\n")),
        ("a head over the limit", request(headers=b"X-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n")),
    ],
)
def test_anything_else_goes_to_the_parser(case: str, data: bytes) -> None:
    assert _raw_request(data, TARGETS) is None, case
