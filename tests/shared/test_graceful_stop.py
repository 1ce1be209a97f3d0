"""A graceful stop (SIGTERM) closes no connection under a request (shared/server.py, `shutdown`).

uvicorn closed every idle keep-alive connection the moment it began to stop, so a request the
gateway had just written on a pooled connection met a closed socket and became a 502 (2 reads in
~17,000 when a canvas replica was stopped under load). Against a real uvicorn process with the
project's protocol, over raw sockets: once the server is stopping, a connection that was idle still
gets its next request answered (with `Connection: close`), an idle one left alone is closed by the
server at its keep-alive deadline, new connections are refused, and the process then ends its graceful stop.

The tests wait for states the server logs ("Waiting for connections to close", which uvicorn
prints after it has asked every connection to shut down), never for a time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import Process
from tests.support.processes import url_of, web_process
from tests.support.stubs import STUB_APP

pytestmark = pytest.mark.e2e

GIVE_UP = 30.0  # seconds a test waits for something that should come far sooner
HEALTH = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
def server(data_dir: Path) -> Iterator[Process]:
    process = web_process("stopping", STUB_APP, {}, data_dir / "logs").start()
    yield process
    process.stop()


def port_of(process: Process) -> int:
    return int(url_of(process).rsplit(":", 1)[1])


async def answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response: its head (lower-cased) and its body (the app always sends a content-length)."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)).lower()
    length = int(head.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    return head, await asyncio.wait_for(reader.readexactly(length), GIVE_UP)


async def until_logged(process: Process, text: str, times: int = 1) -> None:
    deadline = time.monotonic() + GIVE_UP
    while process.tail(200).count(text) < times:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{process.tail()}"
        assert process.running, f"{process.name} exited:\n{process.tail()}"
        await asyncio.sleep(0.05)


async def stopped_gracefully(process: Process) -> bool:
    """The process ended after its whole graceful stop (uvicorn re-raises the SIGTERM it caught
    once it is done, so the exit status is that signal's, or 0 where it is ignored, as for PID 1)."""
    assert process.proc is not None
    code = await asyncio.to_thread(process.proc.wait, GIVE_UP)
    return code in (0, -signal.SIGTERM) and "Finished server process" in process.tail(200)


async def test_a_stopping_server_answers_on_its_idle_connections_and_then_exits(server: Process) -> None:
    port = port_of(server)
    used = await asyncio.open_connection("127.0.0.1", port)  # will carry a request after the stop
    left = await asyncio.open_connection("127.0.0.1", port)  # will stay idle
    for reader, writer in (used, left):
        writer.write(HEALTH)
        head, _ = await answer(reader)
        assert head.startswith(b"http/1.1 200 "), head
        assert b"connection: close" not in head  # kept alive: idle in the client's pool from now

    server.send_signal(signal.SIGTERM)
    await until_logged(server, "Waiting for connections to close")

    # The request a pooled client writes just as the server stops is answered, not cut off...
    reader, writer = used
    writer.write(HEALTH)
    head, _ = await answer(reader)
    assert head.startswith(b"http/1.1 200 "), head
    assert b"connection: close" in head  # ...and tells the client not to use the connection again
    assert await asyncio.wait_for(reader.read(), GIVE_UP) == b""  # then the server closes it
    writer.close()

    # No new connection is taken: a client connecting anew goes elsewhere (another replica).
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)

    # The idle one is closed by the server (at its keep-alive deadline), and the process ends.
    reader, writer = left
    assert await asyncio.wait_for(reader.read(), GIVE_UP) == b""
    writer.close()
    assert await stopped_gracefully(server)


async def test_a_request_half_written_when_the_stop_begins_is_answered(server: Process) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server))
    writer.write(HEALTH[:-2])  # the head without its last line break: the request is on its way
    await writer.drain()
    server.send_signal(signal.SIGTERM)
    await until_logged(server, "Waiting for connections to close")
    writer.write(b"\r\n")
    head, _ = await answer(reader)
    assert head.startswith(b"http/1.1 200 "), head
    assert b"connection: close" in head
    assert await asyncio.wait_for(reader.read(), GIVE_UP) == b""
    writer.close()
    assert await stopped_gracefully(server)


async def test_a_stopping_supervisor_refuses_new_connections_at_once(data_dir: Path) -> None:
    """With several workers, the listening socket stops listening as soon as the stop begins: a new
    connection is refused (the gateway then connects to another replica), not accepted by the
    kernel into a backlog no worker reads any more and reset seconds later (shared/serve.py)."""
    server = web_process("stopping-workers", STUB_APP, {}, data_dir / "logs", workers=2).start()
    try:
        port = port_of(server)
        # Both workers listening: one still starting would keep the socket open after the stop began
        # (CI once sent the SIGTERM before the second worker had started).
        await until_logged(server, "Application startup complete.", times=2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HEALTH)
        await answer(reader)  # an idle keep-alive connection: its worker drains until its deadline
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGTERM)  # the supervisor only, as `docker stop` does
        # Each worker has closed its listening socket: the one with the idle connection waits for it,
        # the other (no connections) goes on to its application's shutdown.
        await until_logged(server, "Waiting for connections to close")
        await until_logged(server, "Waiting for application shutdown.")
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), GIVE_UP) == b""
        writer.close()
        assert server.proc.wait(GIVE_UP) in (0, -signal.SIGTERM)
    finally:
        server.stop()
