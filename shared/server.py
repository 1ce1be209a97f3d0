"""uvicorn's httptools protocol with the limits every public-facing HTTP server needs.

Served with `python -m shared.serve --http shared.server:LimitedHttpToolsProtocol` (uvicorn's command
line; devtools.processes.uvicorn_cmd,
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

These deadlines and uvicorn's keep-alive one share one timer per connection (`_arm`): uvicorn made
and cancelled a timer per answer for the keep-alive alone, and this class two more per request.

A refused head (431) is closed the way nginx's `lingering_close` does it: the answer is written, the
sending side shut, and what the client still sends is read and dropped (at most `_LINGER_BYTES`, for
at most `_LINGER_SECONDS`) before the socket is closed. Closing at once with the client's bytes
still unread makes the kernel answer with a reset, which can destroy the 431 before the client
reads it (a client that writes a 1 MiB head before reading saw "connection reset" instead).

One hook for refusals that must cost the least (issue 14): an app whose `state.fast_answer(scope)`
returns `(status, headers, body)` for a request gets that answer written at once, from the
parser's callback, with no ASGI task, middleware or framework; `None` runs the app as usual. The
gateway's password door (gateway/admission.py) uses it; the app must still answer the same way
itself when served by anything else (its ASGI path does). Cheaper still, before the parser: an app
whose `state.raw_refusals` names request lines (`raw_targets`, e.g. `POST /api/auth/login`) is
asked, for a connection whose bytes are exactly one such request (HTTP/1.1, one Content-Length and
the whole body, nothing behind it, no Transfer-Encoding, Connection or Expect header, the head
within the header limit, no request of the connection still unanswered), whether to refuse it
(`raw_refusal(target, peer, request id)` returns the whole answer, or None); every other shape,
and every request it declines, goes through the parser as usual. The gateway's refusal of a
flooding client then costs 18 µs of CPU instead of 40 (bench/FINDINGS.md).

It also joins the writes of one event-loop turn into one socket write (`_CoalescingWriter`): uvicorn
writes an answer's head and body separately.

A graceful stop (SIGTERM) closes no connection under a request (`shutdown`). uvicorn closes every
idle keep-alive connection at once; a client that has just written a request on one (the gateway,
taking it from its pool) then gets no answer and cannot tell whether the request was processed, so
it must not send it again (a read counts a view): 2 reads in ~17,000 got 502 when a canvas replica
was stopped under load. Here a stopping server keeps serving the connections it has: each next
answer says `Connection: close` and closes its connection, and an idle one is closed at its
keep-alive deadline (`--timeout-keep-alive`, 5 s), which the gateway's pool never reaches (it drops
connections idle for 4 s, gateway/upstreams.py). New connections are refused from the first moment
(uvicorn closes the listening socket; with several workers, shared/serve.py makes its supervisor close
its copy too), so a client connecting anew goes to another replica. A stop
therefore takes up to the keep-alive timeout longer when idle connections are open.

Fair reading between client addresses (issue 14, scenario 9): the event loop serves, in each turn,
every connection that has bytes ready, so one client with 250 connections gets 250 requests handled
in a turn before another client's one, and every turn grows long for everyone. Here each client
address (the TCP peer's IP) may have its connections read at most
`HTTP_READS_PER_ADDRESS_PER_TURN` [8] times per loop turn (`data_received` calls; 0 turns this off).
A connection whose address has used its reads is paused (`pause_reading`), what it read is kept,
and it waits in its address's line (first in, first out); at the start of the next turn each
waiting address in turn (round robin) has the first of its line fed, up to its budget, and resumed.
So a turn handles at most that many requests per address, whatever one address's connection count.
A refusal answered from the raw bytes (below) costs half a read of that budget: it costs less than
half of one, and a flood's refusals then wait half as many turns for the same share of a turn.
uvicorn's own pauses (pipelining, a full body buffer) and this one are two separate reasons to stop
reading (`_FlowControl`): reading resumes only when neither holds. Deadlines, the 431 linger and a
waiting connection's loss work as before (a lost one leaves its line). This is hand-written because
no ASGI server offers it: uvicorn, granian and hypercorn have only global limits (connections,
concurrency, backlog). In front of the server, nginx's `limit_conn` / `limit_req` per address do
the same job earlier and cheaper (README, reverse proxy); this keeps the gateway fair without it.
The address is the TCP peer's, known before anything is parsed: behind a proxy (and in the services,
whose one client is the gateway) every request shares the proxy's address, and the budget is then
only a cap on reads per turn, which costs nothing measurable (bench/FINDINGS.md, scenario 9); the
proxy's own per-address limits are what separate clients there.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Protocol

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

FastAnswer = tuple[int, list[tuple[bytes, bytes]], bytes]
FastAnswerHook = Callable[[dict[str, Any]], FastAnswer | None]


class RawRefusals(Protocol):
    """An app's refusals answerable from a request's raw bytes (`state.raw_refusals`)."""

    def raw_targets(self) -> frozenset[bytes]:
        """`METHOD /path` of the request lines it may answer."""
        ...

    def raw_refusal(self, target: bytes, peer: str, request_id: bytes) -> bytes | None:
        """The whole HTTP/1.1 answer (status line to body, kept alive), or None to serve the
        request as usual."""
        ...


MAX_HEADER_BYTES = int(os.environ.get("HTTP_MAX_HEADER_BYTES", "16384"))
HEAD_TIMEOUT = float(os.environ.get("HTTP_HEAD_TIMEOUT", "10"))
BODY_TIMEOUT = float(os.environ.get("HTTP_BODY_TIMEOUT", "30"))
READS_PER_ADDRESS_PER_TURN = int(os.environ.get("HTTP_READS_PER_ADDRESS_PER_TURN", "8"))
# What a read costs of its address's budget in a turn, in units of one raw refusal (see the module
# docstring): a refusal answered from the raw bytes costs less than half of a request parsed and
# served (18 against 40 µs of the gateway's CPU for the same refusal, bench/FINDINGS.md).
_READ_COST = 2
_RAW_METHODS = (b"POST ", b"PATCH ", b"PUT ", b"DELETE ")  # those whose requests carry a body
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


def _raw_request(data: bytes, targets: frozenset[bytes]) -> tuple[bytes, bytes] | None:
    """`(METHOD /path, X-Request-Id)` of `data` if it is exactly one whole HTTP/1.1 request to one of
    `targets`: its head within the header limit, one Content-Length and the whole body, nothing
    after it, and none of the headers that change how it is read or answered (Transfer-Encoding,
    Connection, Expect). Else None."""
    end = data.find(b"\r\n\r\n")
    line_end = data.find(b"\r\n")
    if end < 0 or line_end < 9 or end > MAX_HEADER_BYTES or not data.startswith(b" HTTP/1.1", line_end - 9):
        return None
    target = data[: line_end - 9]
    if target not in targets:
        return None
    head = data[line_end : end + 2].lower()  # each header line starts with CRLF
    at = head.find(b"\r\ncontent-length:")
    if at < 0 or head.find(b"\r\ncontent-length:", at + 1) >= 0:
        return None
    length = head[at + 17 : head.index(b"\r\n", at + 2)].strip()
    if not length.isdigit() or len(data) != end + 4 + int(length):
        return None
    if b"\r\ntransfer-encoding:" in head or b"\r\nconnection:" in head or b"\r\nexpect:" in head:
        return None
    at = head.find(b"\r\nx-request-id:")
    rid = data[line_end + at + 15 : line_end + head.index(b"\r\n", at + 2)].strip() if at >= 0 else b""
    return target, rid


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


class _FlowControl(FlowControl):
    """uvicorn's flow control with a second, independent reason to stop reading: fair reading's.
    The transport reads only when neither uvicorn (`read_paused`) nor fairness (`fair_paused`)
    holds it, so neither's resume undoes the other's pause."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__(transport)
        self.fair_paused = False

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            if not self.fair_paused:
                self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            if not self.fair_paused and not self._transport.is_closing():
                self._transport.resume_reading()

    def pause_fair(self) -> None:
        if not self.fair_paused:
            self.fair_paused = True
            if not self.read_paused:
                self._transport.pause_reading()

    def resume_fair(self) -> None:
        if self.fair_paused:
            self.fair_paused = False
            if not self.read_paused and not self._transport.is_closing():
                self._transport.resume_reading()


class _FairReading:
    """The budget each client address has used in this event-loop turn, and the connections waiting
    for a turn in a later one (see the module docstring). One per event loop. Budgets are in units
    of one raw refusal; a read costs `_READ_COST` of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, reads: int) -> None:
        self.loop = loop
        self.budget = reads * _READ_COST
        self.used: dict[str, int] = {}
        self.waiting: dict[str, deque[LimitedHttpToolsProtocol]] = {}  # in round-robin order
        self.turn_ending = False

    def admit(self, address: str, cost: int = _READ_COST) -> bool:
        """Take `cost` of `address`'s budget of this turn; False when it has not that much left, or
        when others of its connections are already waiting (they go first)."""
        if not self.has(address, cost):
            return False
        self._use(address, self.used.get(address, 0) + cost)
        return True

    def has(self, address: str, cost: int) -> bool:
        return self.used.get(address, 0) + cost <= self.budget and address not in self.waiting

    def _use(self, address: str, used: int) -> None:
        self.used[address] = used
        if not self.turn_ending:  # the budgets are reset once, at the start of the next turn
            self.turn_ending = True
            self.loop.call_soon(self._next_turn)

    def wait(self, connection: LimitedHttpToolsProtocol) -> None:
        self.waiting.setdefault(connection.address, deque()).append(connection)

    def forget(self, connection: LimitedHttpToolsProtocol) -> None:
        line = self.waiting.get(connection.address)
        if line is not None and connection in line:
            line.remove(connection)
            if not line:
                del self.waiting[connection.address]

    def _next_turn(self) -> None:
        self.turn_ending = False
        self.used.clear()
        for address in list(self.waiting):
            line = self.waiting.pop(address)
            used = 0
            while line and used < self.budget:  # (the last one may overrun it by less than a read)
                connection = line.popleft()
                try:
                    used += connection.resume_deferred()
                except Exception as exc:  # as asyncio does for a protocol's data_received: log, go on
                    self.loop.call_exception_handler({"message": "fair reading", "exception": exc})
                    connection.transport.close()
                    used += _READ_COST
                self._use(address, used)
            if line:  # still waiting: to the end of the round
                self.waiting.setdefault(address, deque()).extendleft(reversed(line))


_fair_readings: list[_FairReading] = []  # the current event loop's (a process serves one at a time)


def fair_reading(loop: asyncio.AbstractEventLoop) -> _FairReading | None:
    """This loop's fair reading, or None when `HTTP_READS_PER_ADDRESS_PER_TURN` is 0."""
    if READS_PER_ADDRESS_PER_TURN <= 0:
        return None
    if not _fair_readings or _fair_readings[0].loop is not loop:
        _fair_readings[:] = [_FairReading(loop, READS_PER_ADDRESS_PER_TURN)]
    return _fair_readings[0]


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = ""
        self._fair: _FairReading | None = None
        self._held: list[bytes] = []  # read while waiting for a turn, not yet parsed
        self._flow: _FlowControl
        self._in_head = True
        self._head_bytes = 0
        self._header_bytes = 0
        self._deadline_at = 0.0  # loop time the connection is closed at (0: none)
        self._idle = False  # the deadline is the keep-alive one (waiting for the next request)
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False  # answered 431: the rest of what the client sent is ignored
        self._linger_left = _LINGER_BYTES
        self._stopping = False  # the server is stopping: every answer from now on closes its connection
        self._between = True  # no request begun and unanswered on this connection (raw refusals)
        self._raw: RawRefusals | None = None
        self._raw_targets: frozenset[bytes] = frozenset()

    # Deadlines: the head's, the body's, the idle keep-alive's and the 431 linger's, one at a time.
    # One timer per connection, not one per deadline: setting a later deadline only moves
    # `_deadline_at`, and the timer, when it fires early, re-arms itself for it. uvicorn (and this
    # class before) made and cancelled three timers per request (head, body, keep-alive); at ~1.5 µs
    # per pair that was 5-8 % of an empty route's CPU (bench/FINDINGS.md).
    def _arm(self, seconds: float) -> None:
        self._idle = False
        at = self._deadline_at = self.loop.time() + seconds
        if self._timer is None or at < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(at, self._check_deadline)

    def _disarm(self) -> None:
        self._deadline_at = 0.0
        self._idle = False

    def _check_deadline(self) -> None:
        self._timer = None
        at = self._deadline_at
        if not at:
            return
        if self.loop.time() < at:
            self._timer = self.loop.call_at(at, self._check_deadline)
            return
        self._deadline_at = 0.0
        if not self.transport.is_closing():
            self.transport.close()

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn calls this when the connection is busy again (data arrived, an answer is done):
        the idle keep-alive deadline ends (uvicorn's own keep-alive timer is never made here)."""
        if self._idle:
            self._disarm()

    def on_response_complete(self) -> None:
        """uvicorn 0.54's, with the keep-alive deadline set as this class's deadline instead of a
        timer of its own per answer."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif not self._deadline_at:  # (a request already arriving has its head deadline)
            self._arm(self.timeout_keep_alive)
            self._idle = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = self._flow = _FlowControl(transport)
        self.transport = _CoalescingWriter(transport, self.loop)  # type: ignore[assignment]
        self.address = self.client[0] if self.client else ""
        self._fair = fair_reading(self.loop)
        self._raw = getattr(getattr(self.app, "state", None), "raw_refusals", None)
        if self._raw is not None:
            self._raw_targets = self._raw.raw_targets()
        self._arm(HEAD_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            self._held.clear()
            if self._fair is not None:
                self._fair.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering after a 431: drop it, up to a bound
            self._linger_left -= len(data)
            if self._linger_left <= 0 and not self.transport.is_closing():
                self.transport.close()
            return
        if self._held:  # already waiting for a turn (reading is paused: this is not expected)
            self._held.append(data)
            return
        fair = self._fair
        if (
            self._raw_targets
            and self._ready_for_raw()
            and (fair is None or fair.has(self.address, 1))
            and self._refuse_raw(data)
        ):
            if fair is not None:
                fair.admit(self.address, 1)
            return
        if self._fair is not None and not self._fair.admit(self.address):
            self._held.append(data)
            self._unset_keepalive_if_required()  # it has a request coming: no keep-alive expiry
            self._flow.pause_fair()
            self._fair.wait(self)
            return
        self._parse(data)

    def resume_deferred(self) -> int:
        """This connection's turn has come: parse what it read, and read again. What it cost of its
        address's budget: 1 if it was a raw refusal, else a read's."""
        data = b"".join(self._held)
        self._held.clear()
        if self.transport.is_closing():
            return 0
        if self._raw_targets and self._ready_for_raw() and self._refuse_raw(data):
            cost = 1
        else:
            cost = _READ_COST
            self._parse(data)
        self._flow.resume_fair()
        return cost

    def _ready_for_raw(self) -> bool:
        """No request begun and unanswered on this connection: what arrives starts a new one."""
        cycle = self.cycle
        return self._between and not self.pipeline and (cycle is None or cycle.response_complete)

    def _refuse_raw(self, data: bytes) -> bool:
        """Answer `data` from its raw bytes if it is one whole request that the app's `raw_refusals`
        refuses; else False, and nothing happened (the parser's way answers the same)."""
        if self._stopping or not data.startswith(_RAW_METHODS):  # a GET, most of the time: no search
            return False
        request = _raw_request(data, self._raw_targets)
        if request is None:
            return False
        assert self._raw is not None
        answer = self._raw.raw_refusal(request[0], self.address, request[1])
        if answer is None:
            return False
        self.transport.write(answer)
        self.server_state.total_requests += 1
        self._arm(self.timeout_keep_alive)  # idle again, as after any answer
        self._idle = True
        return True

    def _parse(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES + _REQUEST_LINE_ALLOWANCE:
            self._too_large()

    def shutdown(self) -> None:
        """Called by uvicorn when the server stops gracefully (see the module docstring): the request
        in progress and any that follow on this connection are answered with `Connection: close`; an
        idle connection is left to its deadline instead of being closed under a request in flight."""
        self._stopping = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False

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
        self._between = False
        self._in_head = True
        self._header_bytes = 0
        if not self._deadline_at:  # a later request on a kept-alive connection
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
        if self._stopping:
            cycle.keep_alive = False
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
        if self._refused:  # after a 431, the deadline is the linger's
            return
        self._disarm()
        super().on_message_complete()
        self._between = True
        cycle = self.cycle
        answered = cycle is not None and cycle.response_complete
        # Answered before its body had all arrived (a refusal, an early error): idle from now.
        if answered and not self.pipeline and not self.transport.is_closing():
            self._arm(self.timeout_keep_alive)
            self._idle = True
