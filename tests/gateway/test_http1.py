"""gateway/http1.py, the upstream client, against real sockets: each behaviour the gateway relies on.

Every server here is a raw asyncio socket server whose answers are written out byte for byte, so a
test says exactly what the service sent (bodies chunked or not, heads only, garbage, silence).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from gateway.http1 import Broken, ConnectFailed, Pool, TimedOut

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """Counts connections and request heads; `handler` answers each connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0  # made in all
        self.open = 0
        self.most_open = 0  # at once
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await self.handler(reader, writer, self)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def head(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        return head


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    server.server = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{server.server.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        server.server.close()


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"\r\n".join([b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra, b"", body])


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
    while True:
        head = await server.head(reader)
        lines = head.lower().split(b"\r\n")
        length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
        body = await reader.readexactly(length)
        writer.write(answer(b"got " + body if body else b"ok"))
        await writer.drain()


@contextlib.asynccontextmanager
async def pool(
    url: str, *, limit: int = 8, keepalive: float = 4.0, read_timeout: float = 5.0
) -> AsyncIterator[Pool]:
    client = Pool(url, limit=limit, keepalive=keepalive, connect_timeout=1.0, read_timeout=read_timeout)
    try:
        yield client
    finally:
        await client.close()


async def fetch(
    client: Pool, method: str = "GET", target: str = "/", body: bytes | None = None
) -> tuple[int, bytes]:
    resp = await client.request(method, target, {"x-request-id": "r1"}, body)
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_requests_share_one_kept_alive_connection_and_send_what_was_asked() -> None:
    async with serving(keep_answering) as server, pool(server.url) as client:
        assert await fetch(client, target="/api/canvases/1?x=%20y") == (200, b"ok")
        assert await fetch(client, "POST", "/api/canvases", b'{"a":1}') == (200, b'got {"a":1}')
        assert await fetch(client, "DELETE", "/api/canvases/1") == (200, b"ok")
    assert server.connections == 1
    first, post, delete = (head.split(b"\r\n") for head in server.heads)
    assert first[0] == b"GET /api/canvases/1?x=%20y HTTP/1.1"
    assert b"x-request-id: r1" in first
    assert b"Host: " + server.url.removeprefix("http://").encode() in first
    assert not any(line.lower().startswith(b"content-length") for line in first)
    assert b"Content-Length: 7" in post
    assert b"Content-Length: 0" not in delete  # a DELETE without a body says nothing of one


async def test_a_connection_left_paused_by_an_unread_answer_reads_again_when_reused() -> None:
    """A caller can stop reading an answer that arrived whole while reading was paused for it (its
    own client went away mid-stream): the connection goes back to the pool reading again."""
    async with serving(keep_answering) as server, pool(server.url) as client:
        resp = await client.request("GET", "/", {})
        assert await resp.read() == b"ok"
        resp._conn.pause()  # as `_feed` does at 256 KiB buffered, the last chunks left unread
        resp.release()
        async with asyncio.timeout(3):  # a paused connection never reads: no read timeout either
            assert await fetch(client) == (200, b"ok")
    assert server.connections == 1


async def test_a_post_without_a_body_says_content_length_zero() -> None:
    async with serving(keep_answering) as server, pool(server.url) as client:
        assert await fetch(client, "POST", "/api/auth/logout") == (200, b"ok")
    assert b"Content-Length: 0" in server.heads[0].split(b"\r\n")


async def test_a_chunked_answer_of_several_mebibytes_streams_through_whole() -> None:
    piece = bytes(range(256)) * 256  # 64 KiB

    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(64):  # 4 MiB, more than the client buffers before it pauses reading
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with serving(chunked) as server, pool(server.url) as client:
        resp = await client.request("GET", "/big", {})
        assert resp.content_length is None
        await asyncio.sleep(0.2)  # a slow reader: the service is held back, nothing is lost
        received = bytearray()
        async for chunk in resp.iter_chunks():
            received += chunk
        resp.release()
    assert bytes(received) == piece * 64


async def test_a_silent_service_times_out_and_a_slow_one_does_not() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.head(reader)
        await reader.read()

    async def dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for byte in b"drip-fed":  # 1.2 s in all, never 0.4 s without a byte
            await asyncio.sleep(0.15)
            writer.write(bytes([byte]))
            await writer.drain()

    async with serving(silent) as server, pool(server.url, read_timeout=0.4) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimedOut):
            await client.request("GET", "/", {})
        assert asyncio.get_running_loop().time() - started < 3
    async with serving(dripping) as server, pool(server.url, read_timeout=0.4) as client:
        assert await fetch(client) == (200, b"drip-fed")


async def test_nothing_listening_is_connect_failed_and_a_full_backlog_a_connect_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with pool(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ConnectFailed):
            await client.request("GET", "/", {})
    with _full_backlog() as port:
        async with pool(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(TimedOut):
                await client.request("GET", "/", {})


@contextlib.contextmanager
def _full_backlog() -> Iterator[int]:
    """A listening socket that never accepts, its backlog filled: a new connect waits for SYN retries."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_connection_broken_mid_answer_is_broken_and_not_reused() -> None:
    async def breaking(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()

    async with serving(breaking) as server, pool(server.url) as client:
        resp = await client.request("GET", "/", {})
        with pytest.raises(Broken):
            await resp.read()
        resp.release()
        with pytest.raises(Broken):
            await fetch(client)
    assert server.connections == 2


async def test_an_answer_that_is_not_http_is_broken() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        await server.head(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await reader.read()

    async with serving(garbage) as server, pool(server.url) as client:
        with pytest.raises(Broken):
            await client.request("GET", "/", {})


async def test_idle_connections_past_keepalive_or_closed_by_the_service_are_not_used() -> None:
    async with serving(keep_answering) as server, pool(server.url, keepalive=0.2) as client:
        assert await fetch(client) == (200, b"ok")
        await asyncio.sleep(0.3)  # idle past keepalive: a new connection
        assert await fetch(client) == (200, b"ok")
    assert server.connections == 2

    async def answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.head(reader)
        writer.write(answer(b"ok"))  # says nothing of closing, then closes while idle (keep-alive timeout)
        await writer.drain()

    async with serving(answer_then_close) as server, pool(server.url) as client:
        for _ in range(3):
            assert await fetch(client) == (200, b"ok")
            await asyncio.sleep(0.1)
    assert server.connections == 3


async def test_connection_close_answers_are_not_kept() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while True:
            await server.head(reader)
            writer.write(answer(b"ok", b"Connection: close"))
            await writer.drain()

    async with serving(closing) as server, pool(server.url) as client:
        assert await fetch(client) == (200, b"ok")
        assert await fetch(client) == (200, b"ok")
    assert server.connections == 2


async def test_a_head_answer_ends_at_its_head_and_closes_its_connection() -> None:
    async def heads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while True:
            head = await server.head(reader)
            if head.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            else:
                writer.write(answer(b"ok"))
            await writer.drain()

    async with serving(heads) as server, pool(server.url) as client:
        resp = await client.request("HEAD", "/", {})
        assert (resp.status, resp.content_length, await resp.read()) == (200, 1234, b"")
        resp.release()
        assert await fetch(client) == (200, b"ok")
    assert server.connections == 2


async def test_callers_beyond_the_limit_wait_for_a_connection() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
        while True:
            await server.head(reader)
            await asyncio.sleep(0.05)
            writer.write(answer(b"ok"))
            await writer.drain()

    async with serving(slow) as server, pool(server.url, limit=2) as client:
        results = await asyncio.gather(*(fetch(client) for _ in range(10)))
        assert results == [(200, b"ok")] * 10
        assert server.most_open == 2
        waiting = [asyncio.ensure_future(fetch(client)) for _ in range(3)]
        await asyncio.sleep(0.01)
        for caller in waiting:  # callers cancelled while they wait hand their turn on
            caller.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        assert await fetch(client) == (200, b"ok")  # (a request cancelled in flight closes its connection)


async def test_a_header_value_with_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with serving(keep_answering) as server, pool(server.url) as client:
        with pytest.raises(ValueError, match="line break"):
            await client.request("GET", "/", {"x-a": "b\r\nx-injected: 1"})
        assert await fetch(client) == (200, b"ok")
    assert len(server.heads) == 1


async def test_only_http_urls_are_accepted() -> None:
    for url in ("https://canvas:8000", "canvas:8000", "http://"):
        with pytest.raises(ValueError, match="must be http"):
            Pool(url, limit=1, keepalive=1, connect_timeout=1, read_timeout=1)
