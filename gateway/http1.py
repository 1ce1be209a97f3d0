"""The gateway's HTTP/1.1 client for its upstream hop: a keep-alive pool of asyncio Protocols that
parse answers with httptools (the parser uvicorn uses).

Hand-written, not aiohttp, for one measured reason (issue 18; bench/FINDINGS.md, "The upstream hop
without aiohttp"): per proxied request aiohttp's `ClientSession._request` builds a request object,
merges headers, arms timers and wraps the stream in several layers, a third of the gateway's Python
time. This client does what the gateway needs and nothing else:

- one request at a time per connection, connections kept alive and reused most-recent-first; a
  connection idle for `keepalive` seconds is closed, not reused (the services' uvicorn closes idle
  ones after 5 s, possibly under a request that would then fail);
- never a re-send: a request whose connection breaks fails with `Broken`, whatever its method (a GET
  of a canvas counts a view, so it is not idempotent here);
- `connect_timeout` for the TCP connect alone (the name is resolved on every new connection, so
  replicas added by `docker compose --scale` get connections as old ones close); `read_timeout` for
  the wait between two reads, as aiohttp's `sock_read`, not counted while the gateway itself holds
  reading paused because its own client reads slowly;
- at most `limit` connections; a caller beyond them waits for one to come back;
- answers with Content-Length or chunked bodies of any size, streamed with flow control (reading
  pauses while `_PAUSE_AT` bytes wait for the caller); a HEAD answer closes its connection after the
  head (llhttp does not know it has no body);
- http:// only (the services sit on the internal network; TLS between them is not in this design).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

_PAUSE_AT = 256 * 1024  # body bytes waiting for the caller before reading from the service pauses
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with Content-Length: 0 when bodiless
_FIXED = "User-Agent: canvas-verse-gateway\r\nAccept-Encoding: identity\r\n"


class UpstreamError(Exception):
    """No (whole) answer from the service."""


class ConnectFailed(UpstreamError):
    """The service could not be reached: refused, unreachable or an unknown name. Nothing was sent."""


class TimedOut(UpstreamError):
    """The connect, or the wait between two reads, took longer than its timeout."""


class Broken(UpstreamError):
    """The connection broke, or the answer was not HTTP, after the request was (maybe) sent."""


class Response:
    """An answer whose head has arrived; the body is read with `read` or `iter_chunks`.

    `release` must be called once done with it: it returns the connection to the pool when the body
    was read whole and the service keeps the connection alive, and closes it otherwise."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_keep_alive",
        "_last_read",
        "_released",
        "_timeout",
        "_timer",
        "_waiter",
        "content_length",
        "raw_headers",
        "status",
    )

    def __init__(self, conn: _Connection, timeout: float) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self._conn = conn
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._done = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._keep_alive = False
        self._released = False
        self._timeout = timeout
        loop = conn.loop
        self._last_read = loop.time()
        self._timer: asyncio.TimerHandle | None = loop.call_at(self._last_read + timeout, self._check_timer)

    async def read(self) -> bytes:
        """The whole body."""
        while not self._done:
            await self._wait()
        return b"".join(self._take())

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, in chunks of whatever was read since the last one."""
        while True:
            if self._chunks:
                yield b"".join(self._take())
            elif self._done:
                return
            else:
                await self._wait()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._stop_timer()
        conn = self._conn
        conn.response = None
        if self._done and self._keep_alive and self._error is None and not conn.closed:
            conn.resume()  # a caller that left its last chunks unread may have left reading paused
            conn.pool._put_back(conn)
        else:
            conn.abort()

    # --- called by the connection ---

    def _head_done(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self._keep_alive = keep_alive
        self._wake()

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= _PAUSE_AT:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        self._done = True
        self._stop_timer()
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self._done or self._error is not None:
            return
        self._error = error
        self._stop_timer()
        self._wake()

    # --- internals ---

    def _take(self) -> list[bytes]:
        if self._error is not None and not self._done:
            raise self._error
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        self._conn.resume()
        return chunks

    async def _head(self) -> None:
        while not self.status:
            await self._wait()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._waiter = self._conn.loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_timer(self) -> None:
        """Fires at most once per `timeout`: the answer failed if nothing arrived since the last read
        (while reading is paused for the caller, the wait is the caller's, not the service's)."""
        loop = self._conn.loop
        now = loop.time()
        if self._conn.paused:
            self._last_read = now
        deadline = self._last_read + self._timeout
        if now < deadline:
            self._timer = loop.call_at(deadline, self._check_timer)
            return
        self._timer = None
        self._fail(TimedOut(f"no answer within {self._timeout} s"))
        self._conn.abort()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Connection(asyncio.Protocol):
    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.head_only = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None or response._done:  # bytes nobody asked for: not to be trusted again
            self.abort()
            return
        response._last_read = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._fail(Broken(f"invalid HTTP answer: {exc}"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if self.response is not None:
            self.response._fail(Broken("the connection closed before the answer ended"))

    # --- httptools callbacks ---

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.raw_headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            with contextlib.suppress(ValueError):  # llhttp refuses a malformed one first
                self.response.content_length = int(value)

    def on_headers_complete(self) -> None:
        assert self.response is not None
        keep_alive = self.parser.should_keep_alive() and not self.head_only
        self.response._head_done(self.parser.get_status_code(), keep_alive)
        if self.head_only:
            self.response._finish()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response._finish()

    # --- flow control and closing ---

    def pause(self) -> None:
        if not self.paused and not self.closed and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()  # connection_lost follows and frees the place


class Pool:
    """Keep-alive connections to one `http://host:port` address."""

    def __init__(
        self, base_url: str, *, limit: int, keepalive: float, connect_timeout: float, read_timeout: float
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream URL must be http://host[:port], not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self._head_start = f"Host: {parts.netloc}\r\n{_FIXED}"
        self.limit = limit
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.loop = asyncio.get_running_loop()
        self._idle: collections.deque[_Connection] = collections.deque()
        self._open = 0  # connections open or being opened
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        read_timeout: float | None = None,
    ) -> Response:
        """Send one request and return its answer once the head has arrived.

        `target` is the path and query, already percent-encoded. Raises ConnectFailed (nothing was
        sent), TimedOut or Broken (the service may have received the request)."""
        head = self._head(method, target, headers, body)
        conn = await self._acquire()
        conn.head_only = method == "HEAD"
        response = conn.response = Response(conn, self.read_timeout if read_timeout is None else read_timeout)
        assert conn.transport is not None
        conn.transport.write(head + body if body else head)
        try:
            await response._head()
        except BaseException:
            response.release()
            raise
        return response

    async def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().abort()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _head(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        lines = [method, " ", target, " HTTP/1.1\r\n", self._head_start]
        for name, value in headers.items():
            if "\n" in value or "\r" in value:
                raise ValueError(f"header {name} holds a line break")
            lines += (name, ": ", value, "\r\n")
        if body is not None or method in _BODY_METHODS:
            lines += ("Content-Length: ", str(len(body) if body else 0), "\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    async def _acquire(self) -> _Connection:
        while True:
            if self._closed:
                raise ConnectFailed("the client is closed")
            now = self.loop.time()
            while self._idle:
                conn = self._idle.pop()  # most recently used first
                if not conn.closed and now - conn.idle_since < self.keepalive:
                    return conn
                conn.abort()
            if self._open < self.limit:
                return await self._connect()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # the turn this caller was given goes to the next one
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self) -> _Connection:
        self._open += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except TimeoutError as exc:
            self._connection_gone()
            raise TimedOut(f"no connection within {self.connect_timeout} s") from exc
        except OSError as exc:
            self._connection_gone()
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._connection_gone()
            raise
        return conn

    def _put_back(self, conn: _Connection) -> None:
        if self._closed:
            conn.abort()
            return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)
        self._wake_one()

    def _forget(self, conn: _Connection) -> None:
        """A connection closed (by either side)."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._connection_gone()

    def _connection_gone(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
