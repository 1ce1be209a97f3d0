"""uvicorn's httptools protocol with the limits every public-facing HTTP server needs.

Served with `uvicorn --http shared.server:LimitedHttpToolsProtocol` (devtools.processes.uvicorn_cmd,
docker-compose.yml). uvicorn's own settings cover two limits and are used for them:
`--timeout-keep-alive` (an idle keep-alive connection is closed after it; 5 s here) and
`--limit-concurrency` (beyond it new requests get 503 at once). It has no setting for the rest
with httptools, which parses the head with no size limit and no deadline (a 32 MiB header line is
buffered whole; a client sending a header line every 5 s, or a body at a byte every 5 s, or
nothing at all after connecting, holds the connection for ever). h11's `h11_max_incomplete_event_size`
bounds the head, but answers 400 rather than 431 and still has no deadlines; hypercorn's and
granian's read timeouts are per read, which a byte every few seconds resets. So this subclass adds,
from the environment (defaults in brackets):

- `HTTP_MAX_HEADER_BYTES` [16384]: request headers (names and values) over this in total are 431;
  bytes of an unfinished head are counted as they arrive, so an endless header line is cut at the
  limit instead of buffered.
- `HTTP_HEAD_TIMEOUT` [10]: seconds from the connection (or the first byte of a later request on
  it) until its head is complete; then the connection is closed.
- `HTTP_BODY_TIMEOUT` [30]: seconds from a complete head until the whole body has arrived.

A refused head (431) is closed the way nginx's `lingering_close` does it: the answer is written, the
sending side shut, and what the client still sends is read and dropped (at most `_LINGER_BYTES`, for
at most `_LINGER_SECONDS`) before the socket is closed. Closing at once with the client's bytes
still unread makes the kernel answer with a reset, which can destroy the 431 before the client
reads it (a client that writes a 1 MiB head before reading saw "connection reset" instead).

One hook for refusals that must cost the least (issue 14): an app whose `state.fast_answer(scope)`
returns `(status, headers, body)` for a request gets that answer written at once, from the
parser's callback, with no ASGI task, middleware or framework; `None` runs the app as usual. The
gateway's password door (gateway/admission.py) uses it; the app must still answer the same way
itself when served by anything else (its ASGI path does).

It also joins the writes of one event-loop turn into one socket write (`_CoalescingWriter`): uvicorn
writes an answer's head and body separately.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

FastAnswer = tuple[int, list[tuple[bytes, bytes]], bytes]
FastAnswerHook = Callable[[dict[str, Any]], FastAnswer | None]

MAX_HEADER_BYTES = int(os.environ.get("HTTP_MAX_HEADER_BYTES", "16384"))
HEAD_TIMEOUT = float(os.environ.get("HTTP_HEAD_TIMEOUT", "10"))
BODY_TIMEOUT = float(os.environ.get("HTTP_BODY_TIMEOUT", "30"))
# The request line is not a header; a long URL is allowed this much on top of the header limit
# while the head is still arriving.
_REQUEST_LINE_ALLOWANCE = 8192
# After a 431: how much of what the client still sends is read and dropped, and for how long, before
# the connection is closed (see the module docstring).
_LINGER_BYTES = 4 << 20
_LINGER_SECONDS = 2.0

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)
_431_BODY = (
    b'{"status":431,"title":"Request Header Fields Too Large",'
    b'"detail":"Request headers are limited to %d bytes in total"}'
)


class _CoalescingWriter:
    """The connection's transport, with the writes of one event-loop turn sent as one: uvicorn writes
    an answer's head and its body separately, two send() calls on the socket per request where one
    does (issue 18). The writes are joined and sent at the end of the loop turn they were made in,
    in order; `close` sends what is pending first."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False  # answered 431: the rest of what the client sent is ignored
        self._linger_left = _LINGER_BYTES

    # Deadlines
    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _CoalescingWriter(transport, self.loop)  # type: ignore[assignment]
        self._arm(HEAD_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a 431: drop it, up to a bound
            self._linger_left -= len(data)
            if self._linger_left <= 0 and not self.transport.is_closing():
                self.transport.close()
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES + _REQUEST_LINE_ALLOWANCE:
            self._too_large()

    def send_400_response(self, msg: str) -> None:
        if not self._refused and not self.transport.is_closing():
            super().send_400_response(msg)

    def _too_large(self) -> None:
        if self._refused:
            return
        self._refused = True
        if self.transport.is_closing():
            return
        body = _431_BODY % MAX_HEADER_BYTES
        self.transport.write(_431 % (len(body), body))
        self.transport.write_eof()  # the answer and a FIN; the deadline below closes the socket
        self._arm(_LINGER_SECONDS)

    # Parser callbacks
    def on_message_begin(self) -> None:
        if self._refused:  # a request pipelined behind the refused one, in the same read
            return
        super().on_message_begin()
        self._in_head = True
        self._header_bytes = 0
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(HEAD_TIMEOUT)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._head_bytes = 0
        if self._header_bytes > MAX_HEADER_BYTES:
            self._too_large()
            return
        self._arm(BODY_TIMEOUT)
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        hook: FastAnswerHook | None = getattr(getattr(self.app, "state", None), "fast_answer", None)
        answer = hook(cycle.scope) if hook is not None else None  # type: ignore[arg-type]
        if answer is None:
            super()._start_asgi_task(cycle, app)
            return
        status, headers, body = answer
        head = [b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())]
        head += [b"%s: %s\r\n" % header for header in headers]
        head.append(b"content-length: %d\r\n" % len(body))
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        self.transport.write(b"".join(head) + b"\r\n" + body)
        # As uvicorn's own cycle does once a response is complete: the rest of this request's body
        # is then ignored by the parser callbacks, and the connection is kept or closed.
        cycle.response_started = cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:  # after a 431, the deadline is the linger's
            self._disarm()
            super().on_message_complete()
