"""Fair reading between client addresses (shared/server.py): one address's many connections cannot
take every read of an event-loop turn. A real uvicorn process with the project's protocol and
`HTTP_READS_PER_ADDRESS_PER_TURN=1` serves tests/support/fair_app.py; clients connect from
127.0.0.1 and 127.0.0.2 over raw sockets.

To put many requests in the same loop turn, a test first holds the server's event loop (`/block`),
queues its requests, then releases it: the outcome is read from the order the app saw the requests
in (`/seq`), never from timings.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.processes import Process
from tests.support.processes import web_process

pytestmark = pytest.mark.e2e

FLOODER = "127.0.0.2"
OTHER = "127.0.0.1"
CONNECTIONS = 40
GIVE_UP = 30.0


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[tuple[Process, Path]]:
    folder = data_dir / f"fair-{secrets.token_hex(4)}"
    folder.mkdir()
    env = {
        "HTTP_READS_PER_ADDRESS_PER_TURN": "1",
        "FAIR_BLOCKED_FILE": str(folder / "blocked"),
        "FAIR_RELEASE_FILE": str(folder / "release"),
    }
    process = web_process("fair", "tests.support.fair_app:app", env, data_dir / "logs").start()
    yield process, folder
    process.stop()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(server: Process, source: str) -> Connection:
    assert server.health_url
    port = int(server.health_url.rsplit(":", 1)[1].split("/")[0])
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


async def answer(reader: asyncio.StreamReader) -> bytes:
    """One response's body (the app always sends a content-length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GIVE_UP)
    assert head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 429 ")), head
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return await asyncio.wait_for(reader.readexactly(length), GIVE_UP)


async def ask(connection: Connection, path: str) -> bytes:
    reader, writer = connection
    writer.write(get(path))
    return await answer(reader)


async def hold_loop(server: Process, folder: Path) -> Connection:
    """The server's event loop stands still from now until `release(folder)`."""
    (folder / "release").unlink(missing_ok=True)
    (folder / "blocked").unlink(missing_ok=True)
    holder = await connect(server, OTHER)
    holder[1].write(get("/block"))
    for _ in range(int(GIVE_UP / 0.01)):
        if (folder / "blocked").exists():
            return holder
        await asyncio.sleep(0.01)
    raise AssertionError("the server never started blocking")


async def release(folder: Path, holder: Connection) -> None:
    (folder / "release").touch()
    assert await answer(holder[0]) == b"released"
    holder[1].close()


async def test_another_address_is_read_in_the_same_turn_as_a_flooding_one(
    server: tuple[Process, Path],
) -> None:
    process, folder = server
    flood = [await connect(process, FLOODER) for _ in range(CONNECTIONS)]
    other = await connect(process, OTHER)
    for connection in [*flood, other]:  # kept alive and accepted before the loop is held
        await ask(connection, "/seq")
    holder = await hold_loop(process, folder)
    for _, writer in flood:
        writer.write(get("/seq"))
        await writer.drain()
    other[1].write(get("/seq"))  # the last to arrive: without fair reading, the last read
    await other[1].drain()
    await release(folder, holder)
    flood_seen = [int(await answer(reader)) for reader, _ in flood]
    other_seen = int(await answer(other[0]))
    # One read per address per turn: the other address's request is among the first the app sees,
    # while the flooding address's are spread over the following turns.
    assert other_seen <= min(flood_seen) + 2, (other_seen, sorted(flood_seen))
    assert len(set(flood_seen)) == CONNECTIONS
    for _, writer in [*flood, other]:
        writer.close()


async def test_pipelined_requests_are_answered_in_order(server: tuple[Process, Path]) -> None:
    process, folder = server
    flood = [await connect(process, FLOODER) for _ in range(10)]
    holder = await hold_loop(process, folder)
    for _, writer in flood:
        writer.write(get("/seq") * 5)  # five requests in one write on each connection
    await release(folder, holder)
    for reader, writer in flood:
        seen = [int(await answer(reader)) for _ in range(5)]
        assert seen == sorted(seen), seen
        assert len(set(seen)) == 5, seen
        writer.close()


async def test_large_bodies_arrive_whole(server: tuple[Process, Path]) -> None:
    process, _ = server
    bodies = [secrets.token_bytes(1 << 20) for _ in range(4)]  # each over uvicorn's 64 KiB high water

    async def post(body: bytes) -> bytes:
        reader, writer = await connect(process, FLOODER)
        head = f"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        writer.write(head + body)
        try:
            return await answer(reader)
        finally:
            writer.close()

    answers = await asyncio.gather(*(post(body) for body in bodies))
    assert answers == [b"%d %s" % (len(b), hashlib.sha256(b).hexdigest().encode()) for b in bodies]


async def test_waiting_connections_closed_by_their_client_are_dropped(server: tuple[Process, Path]) -> None:
    process, folder = server
    flood = [await connect(process, FLOODER) for _ in range(CONNECTIONS)]
    for connection in flood:
        await ask(connection, "/seq")
    holder = await hold_loop(process, folder)
    for _, writer in flood:  # a request, then gone before the server could read it
        writer.write(get("/seq"))
        writer.close()
    await release(folder, holder)
    probe = await connect(process, FLOODER)
    for _ in range(int(GIVE_UP / 0.05)):
        if await ask(probe, "/waiting") == b"0":
            break
        await asyncio.sleep(0.05)
    assert await ask(probe, "/waiting") == b"0"
    assert int(await ask(probe, "/seq")) > 0  # the address is still served
    probe[1].close()


async def test_a_raw_refusal_costs_half_a_read(server: tuple[Process, Path]) -> None:
    """With one read per address per turn, an address may instead have two refusals answered from
    the raw bytes (shared/server.py: a read costs two units of the budget, a raw refusal one). One
    address's 20 refusals and another's 10 reads, all ready in the same turn: each turn answers two
    refusals and one read, so the reads' numbers are three apart while refusals remain (two apart
    if a refusal cost a read)."""
    process, folder = server
    refusing = [await connect(process, FLOODER) for _ in range(20)]
    reading = [await connect(process, OTHER) for _ in range(10)]
    for connection in reading:
        await ask(connection, "/seq")
    refuse = b"POST /refuse HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n{}"
    for _, writer in refusing:  # their first refusals, outside the held turn: they are answered at once
        writer.write(refuse)
    for reader, _ in refusing:
        await answer(reader)
    holder = await hold_loop(process, folder)
    for _, writer in refusing:
        writer.write(refuse)
        await writer.drain()
    for _, writer in reading:
        writer.write(get("/seq"))
        await writer.drain()
    await release(folder, holder)
    refused = sorted([int(await answer(reader)) for reader, _ in refusing])
    reads = sorted([int(await answer(reader)) for reader, _ in reading])
    gaps = [b - a for a, b in itertools.pairwise(reads) if b < refused[-1]]
    assert len(gaps) >= 5, (reads, refused)
    assert sorted(gaps)[len(gaps) // 2] == 3, (reads, refused)
    for _, writer in [*refusing, *reading]:
        writer.close()
