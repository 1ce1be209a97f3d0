"""gateway/upstreams.py against real sockets: no re-sent request, a breaker that closes on a probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.upstreams import Upstream
from shared.errors import AppError

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class CountingServer:
    """HTTP/1.1 over raw sockets: answers the first request on a connection, then reads the next one
    (counting it, as a worker that counted a view) and drops the connection without answering."""

    def __init__(self) -> None:
        self.arrived: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for answer in (True, False):
                head = await reader.readuntil(b"\r\n\r\n")
                self.arrived.append(head.split(b"\r\n", 1)[0])
                if not answer:
                    break
                writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


@pytest.fixture
async def counting_server() -> AsyncIterator[CountingServer]:
    server = CountingServer()
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    yield server
    server.server.close()
    await server.server.wait_closed()


def _upstream(port: int, failures: int = 5, cooldown: float = 5.0) -> Upstream:
    return Upstream(
        "canvas",
        f"http://127.0.0.1:{port}",
        connect_timeout=2,
        read_timeout=5,
        pool_size=4,
        failures=failures,
        cooldown=cooldown,
    )


async def test_a_get_whose_keep_alive_connection_dropped_is_not_sent_again(
    counting_server: CountingServer,
) -> None:
    upstream = _upstream(counting_server.port)
    await upstream.start()
    try:
        assert await upstream.json("GET", "/api/canvases/1", headers={}) == (200, b"ok")
        with pytest.raises(AppError) as failed:
            await upstream.json("GET", "/api/canvases/1", headers={})  # on the kept-alive connection
        assert failed.value.status_code == 502
        # Arrived twice: the answered read and the one the "worker" counted before dying. aiohttp's own
        # retry would have made it three (and a 200 for a read counted twice).
        assert counting_server.arrived == [b"GET /api/canvases/1 HTTP/1.1"] * 2
    finally:
        await upstream.close()


async def test_the_breaker_closes_as_soon_as_a_probe_succeeds(unused_tcp_port: int) -> None:
    upstream = _upstream(unused_tcp_port, failures=1, cooldown=3600.0)
    await upstream.start()
    try:
        with pytest.raises(AppError) as refused:
            await upstream.json("GET", "/health", headers={})
        assert refused.value.status_code == 502
        with pytest.raises(AppError) as down:
            await upstream.json("GET", "/health", headers={})
        assert down.value.status_code == 503  # marked down, for an hour at most
        server = await asyncio.start_server(_answer_ok, "127.0.0.1", unused_tcp_port)
        try:
            for _ in range(200):  # the probe, not the hour, lets requests through again
                if not upstream.down_until:
                    break
                await asyncio.sleep(0.05)
            assert await upstream.json("GET", "/health", headers={}) == (200, b"ok")
        finally:
            server.close()
            await server.wait_closed()
    finally:
        await upstream.close()


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
