"""The HTTP server's limits (shared/server.py), driven with raw sockets against real processes:
oversized heads are 431 and never buffered whole, slow heads and bodies and idle connections are
disconnected.

The deadlines are shortened for the test gateway (HTTP_HEAD_TIMEOUT / HTTP_BODY_TIMEOUT = 1 s);
the assertions only say "closed, and not while the client was still within its deadline", with
generous upper bounds, never how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devtools.processes import KEEP_ALIVE, Process
from shared.server import MAX_HEADER_BYTES
from tests.support.processes import url_of

pytestmark = pytest.mark.e2e

DEADLINE = 1.0
GIVE_UP = 20.0  # seconds a test waits for a close that should come after about DEADLINE


@pytest.fixture(scope="module")
def limited(start_gateway: Callable[..., Process]) -> Process:
    env = {"HTTP_HEAD_TIMEOUT": str(DEADLINE), "HTTP_BODY_TIMEOUT": str(DEADLINE)}
    return start_gateway(env=env)


def address(process: Process) -> tuple[str, int]:
    parts = urlsplit(url_of(process))
    assert parts.hostname
    assert parts.port
    return parts.hostname, parts.port


def rss_mib(process: Process) -> float:
    status = Path(f"/proc/{process.proc.pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return kib / 1024


async def exchange(process: Process, head: bytes) -> bytes:
    """Send a request head; everything the server answers until it closes (or GIVE_UP)."""
    reader, writer = await asyncio.open_connection(*address(process))
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1 << 20), GIVE_UP)
    finally:
        writer.close()


def request(*headers: tuple[str, str]) -> bytes:
    lines = [
        "GET /api/canvases HTTP/1.1",
        "Host: test",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_headers_over_16_kib_in_total_are_431(limited: Process, stub: Process) -> None:
    assert MAX_HEADER_BYTES == 16 * 1024
    for server in (limited, stub):  # the gateway and a service: the same server settings
        fits = await exchange(server, request(("X-Big", "a" * (MAX_HEADER_BYTES - 200))))
        expected = b"HTTP/1.1 200 " if server is limited else b"HTTP/1.1 401 "  # no credential
        assert fits.startswith(expected), fits[:100]
        one_big = await exchange(server, request(("X-Big", "a" * (MAX_HEADER_BYTES + 1))))
        assert one_big.startswith(b"HTTP/1.1 431 "), one_big[:100]
        assert b"application/problem+json" in one_big
        many = await exchange(server, request(*((f"X-H{i}", "v") for i in range(5000))))
        assert many.startswith(b"HTTP/1.1 431 "), many[:100]
        a_mib = await exchange(server, request(*((f"X-M{i}", "b" * 1000) for i in range(1024))))
        assert a_mib.startswith(b"HTTP/1.1 431 "), a_mib[:100]


async def _endless_header_line(process: Process, size: int) -> int:
    """Stream one header line of `size` bytes; how many the server took before it cut us off."""
    reader, writer = await asyncio.open_connection(*address(process))
    chunk = b"a" * (64 * 1024)
    sent = 0
    try:
        writer.write(b"GET /api/canvases HTTP/1.1\r\nHost: test\r\nX-Endless: ")
        while sent < size:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), GIVE_UP)
            sent += len(chunk)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        with contextlib.suppress(ConnectionError):
            writer.close()
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(reader.read(), GIVE_UP)
    return sent


async def test_a_32_mib_header_line_is_cut_off_and_memory_stays_flat(limited: Process) -> None:
    await exchange(limited, request())  # warm
    before = rss_mib(limited)
    sizes = await asyncio.gather(*(_endless_header_line(limited, 32 << 20) for _ in range(3)))
    # The server closed each connection long before 32 MiB (the socket buffers hold a few MiB).
    assert all(sent < 32 << 20 for sent in sizes), sizes
    assert rss_mib(limited) - before < 16, (before, rss_mib(limited))
    assert (await exchange(limited, request())).startswith(b"HTTP/1.1 200 ")


async def _until_closed(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, drip: bytes) -> float:
    """Send `drip` a byte every 0.25 s until the server closes; seconds it took."""
    started = time.monotonic()
    with contextlib.suppress(ConnectionError):
        for byte in drip:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1024), 0.25) == b"":
                    return time.monotonic() - started
            if time.monotonic() - started > GIVE_UP:
                break
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(reader.read(), GIVE_UP)
    return time.monotonic() - started


async def test_a_slow_head_is_disconnected(limited: Process) -> None:
    reader, writer = await asyncio.open_connection(*address(limited))
    took = await _until_closed(writer, reader, b"GET /api/canvases HTTP/1.1\r\nX-Slow: " + b"s" * 1000)
    writer.close()
    assert DEADLINE * 0.9 <= took < GIVE_UP, took


async def test_a_slow_body_is_disconnected(limited: Process) -> None:
    reader, writer = await asyncio.open_connection(*address(limited))
    writer.write(b"POST /api/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n")
    writer.write(b"Content-Length: 1000\r\n\r\n")
    took = await _until_closed(writer, reader, b"{" + b" " * 998 + b"}")
    writer.close()
    assert DEADLINE * 0.9 <= took < GIVE_UP, took


async def test_a_silent_connection_is_closed(limited: Process) -> None:
    reader, writer = await asyncio.open_connection(*address(limited))
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), GIVE_UP) == b""
    assert time.monotonic() - started >= DEADLINE * 0.9
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(limited: Process) -> None:
    reader, writer = await asyncio.open_connection(*address(limited))
    writer.write(b"GET /api/canvases HTTP/1.1\r\nHost: t\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[
            1
        ]
    )
    await reader.readexactly(length)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), KEEP_ALIVE + GIVE_UP) == b""  # closed by the server
    assert time.monotonic() - started >= KEEP_ALIVE * 0.9
    writer.close()


async def test_after_a_431_the_server_drops_what_follows_then_closes(limited: Process) -> None:
    """The lingering close: the client that keeps sending after its 431 still reads the answer,
    and the server closes the socket within its bound (a write then fails) instead of for ever."""
    reader, writer = await asyncio.open_connection(*address(limited))
    try:
        writer.write(request(("X-Big", "a" * (MAX_HEADER_BYTES + 1))))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1 << 20), GIVE_UP)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert await asyncio.wait_for(reader.read(), GIVE_UP) == b""  # the server's FIN
        started = time.monotonic()
        with pytest.raises(ConnectionError):
            while time.monotonic() - started < GIVE_UP:
                writer.write(b"x" * 1024)
                await writer.drain()
                await asyncio.sleep(0.05)
    finally:
        writer.close()


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return head


async def test_a_busy_keep_alive_connection_stays_open_and_closes_once_idle(limited: Process) -> None:
    """One timer per connection carries its deadlines (shared/server.py): a timer set for an earlier
    idle spell must not close the connection while it is busy again, and must still close it idle."""
    reader, writer = await asyncio.open_connection(*address(limited))
    try:
        for _ in range(3):  # each gap is 0.6 keep-alive: the first idle spell's timer fires mid-way
            writer.write(b"GET /api/canvases HTTP/1.1\r\nHost: t\r\n\r\n")
            await writer.drain()
            assert (await _read_answer(reader)).startswith(b"HTTP/1.1 200 ")
            await asyncio.sleep(KEEP_ALIVE * 0.6)
        writer.write(b"GET /api/canvases HTTP/1.1\r\nHost: t\r\n\r\n")
        await writer.drain()
        assert (await _read_answer(reader)).startswith(b"HTTP/1.1 200 ")
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), KEEP_ALIVE + GIVE_UP) == b""
        assert time.monotonic() - started >= KEEP_ALIVE * 0.9
    finally:
        writer.close()


async def test_a_connection_answered_before_its_body_arrived_is_closed_once_idle(
    start_gateway: Callable[..., Process],
) -> None:
    """413 from the Content-Length alone, then the client sends the body and goes quiet: the
    connection is idle from then on, and closed after the keep-alive like any other (uvicorn's
    keep-alive timer was cancelled by the body's bytes, which left such a connection open for ever)."""
    gateway = start_gateway(body_limit=16)
    reader, writer = await asyncio.open_connection(*address(gateway))
    try:
        body = b'{"title": "' + b"x" * 40 + b'"}'
        writer.write(
            b"POST /api/canvases HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        await writer.drain()
        assert (await _read_answer(reader)).startswith(b"HTTP/1.1 413 ")
        writer.write(body)
        await writer.drain()
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), KEEP_ALIVE + GIVE_UP) == b""
        assert time.monotonic() - started >= KEEP_ALIVE * 0.9
    finally:
        writer.close()
