"""shared.resp: the lean client against a real redis-server of its own (pipelining, scripts, faults)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devtools.redis_server import RedisServer, free_port, redis_binary
from shared.redis import REDIS_UNAVAILABLE, REQUEST_PATH, redis_client
from shared.resp import LeanRedis, LeanScript

ECHO_KEYS_AND_ARGS = LeanScript("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
async def plain(own_redis: RedisServer) -> AsyncIterator[Redis]:
    async with redis_client(own_redis.url, REQUEST_PATH) as client:
        yield client


@pytest.fixture
async def lean(plain: Redis) -> AsyncIterator[LeanRedis]:
    client = LeanRedis.like(plain)
    yield client
    await client.aclose()


async def test_concurrent_callers_each_get_their_own_reply(lean: LeanRedis) -> None:
    """500 commands in flight on the one connection: every caller gets the reply to its command."""
    replies = await asyncio.gather(*(lean.execute(b"ECHO", f"value-{i}") for i in range(500)))
    assert replies == [f"value-{i}".encode() for i in range(500)]
    counts = await asyncio.gather(*(lean.execute(b"INCR", "counter") for _ in range(200)))
    assert sorted(counts) == list(range(1, 201))


async def test_a_script_runs_by_its_sha_and_is_loaded_again_after_a_flush(
    lean: LeanRedis, plain: Redis
) -> None:
    assert await lean.evalsha(ECHO_KEYS_AND_ARGS, ["k"], ["a"]) == [b"k", b"a", 1]
    assert await plain.script_exists(ECHO_KEYS_AND_ARGS.sha.decode()) == [True]
    await plain.script_flush()
    assert await lean.evalsha(ECHO_KEYS_AND_ARGS, ["k"], [b"b"]) == [b"k", b"b", 2]
    assert await plain.script_exists(ECHO_KEYS_AND_ARGS.sha.decode()) == [True]


async def test_an_error_reply_raises_and_the_connection_stays_usable(lean: LeanRedis) -> None:
    await lean.execute(b"SET", "text", "abc")
    results = await asyncio.gather(
        lean.execute(b"INCR", "text"), lean.execute(b"ECHO", "after"), return_exceptions=True
    )
    assert isinstance(results[0], ResponseError)
    assert results[1] == b"after"


async def test_a_cancelled_caller_does_not_shift_the_others_replies(lean: LeanRedis) -> None:
    calls = [asyncio.ensure_future(lean.execute(b"ECHO", str(i))) for i in range(20)]
    await asyncio.sleep(0)  # all sent
    calls[5].cancel()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[5], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 5] == [str(i).encode() for i in range(20) if i != 5]


async def test_a_stopped_redis_is_unavailable_and_the_next_call_after_its_start_succeeds(
    own_redis: RedisServer, lean: LeanRedis
) -> None:
    assert await lean.execute(b"PING") == b"PONG"
    own_redis.stop()
    with pytest.raises(RedisConnectionError):
        await lean.execute(b"PING")
    with pytest.raises(REDIS_UNAVAILABLE):  # refused: it stays down
        await lean.execute(b"PING")
    own_redis.start()
    assert await lean.execute(b"PING") == b"PONG"


async def test_a_restart_between_calls_costs_no_error(own_redis: RedisServer, lean: LeanRedis) -> None:
    """The closed connection is noticed when Redis closes it, so the next call connects again."""
    assert await lean.execute(b"PING") == b"PONG"
    own_redis.restart()
    await asyncio.sleep(0.1)  # the server's close reaches this loop
    assert await lean.execute(b"PING") == b"PONG"


async def test_a_stalled_redis_times_out_every_waiting_call_then_recovers(own_redis: RedisServer) -> None:
    async with Redis.from_url(own_redis.url) as admin:
        lean = LeanRedis(port=own_redis.port, socket_timeout=0.3)
        try:
            assert await lean.execute(b"PING") == b"PONG"
            await admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")
            results = await asyncio.gather(*(lean.execute(b"PING") for _ in range(5)), return_exceptions=True)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
            assert all(isinstance(r, REDIS_UNAVAILABLE) for r in results)
            await admin.execute_command("CLIENT", "UNPAUSE")
            assert await lean.execute(b"PING") == b"PONG"  # on a new connection
        finally:
            await lean.aclose()


async def _lean_like_writes_where_it_reads(plain: Redis) -> None:
    """A LeanRedis made `like` this client writes a key this client then reads (same server, db)."""
    lean = LeanRedis.like(plain)
    value = f"written-{id(lean)}"
    try:
        await lean.execute(b"SET", "where", value)
        assert await plain.get("where") == value.encode()
    finally:
        await lean.aclose()


async def test_like_takes_the_database_and_password_of_the_redis_py_client(own_redis: RedisServer) -> None:
    async with Redis.from_url(own_redis.url) as admin:
        await admin.config_set("requirepass", "s3cret")
        try:
            async with Redis.from_url(f"redis://:s3cret@127.0.0.1:{own_redis.port}/3") as other:
                await _lean_like_writes_where_it_reads(other)
            wrong = LeanRedis(port=own_redis.port, password="wrong")
            with pytest.raises(REDIS_UNAVAILABLE):
                await wrong.execute(b"PING")
            await wrong.aclose()
        finally:
            await admin.execute_command("AUTH", "s3cret")
            await admin.config_set("requirepass", "")


async def test_closing_during_a_connect_fails_its_waiters_with_a_redis_error(own_redis: RedisServer) -> None:
    """Shutdown while a caller waits for the connection: a Redis error (503), not a CancelledError."""
    async with Redis.from_url(own_redis.url) as admin:
        lean = LeanRedis(port=own_redis.port, db=1, socket_timeout=5.0)  # SELECT waits on the pause
        await admin.execute_command("CLIENT", "PAUSE", 2000, "ALL")
        try:
            waiting = asyncio.ensure_future(lean.execute(b"PING"))
            await asyncio.sleep(0.1)
            await lean.aclose()
            (result,) = await asyncio.gather(waiting, return_exceptions=True)
            assert isinstance(result, REDIS_UNAVAILABLE), repr(result)
        finally:
            await admin.execute_command("CLIENT", "UNPAUSE")


async def test_a_connect_that_failed_with_nobody_waiting_is_tried_again(own_redis: RedisServer) -> None:
    """Every caller gave up during the connect, which then failed: the next caller connects anew."""
    async with Redis.from_url(own_redis.url) as admin:
        lean = LeanRedis(port=own_redis.port, db=1, socket_timeout=0.2)
        try:
            await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(lean.execute(b"PING"), 0.05)
            await asyncio.sleep(0.4)  # the SELECT of that connect times out, with nobody waiting
            await admin.execute_command("CLIENT", "UNPAUSE")
            assert await lean.execute(b"PING") == b"PONG"
        finally:
            await lean.aclose()


@pytest.fixture
def unix_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server listening on a Unix socket only."""
    socket_path = tmp_path / "redis.sock"
    args = [
        redis_binary(),
        "--port",
        "0",
        "--unixsocket",
        str(socket_path),
        "--save",
        "",
        "--dir",
        str(tmp_path),
    ]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if socket_path.exists():
                break
            time.sleep(0.05)
        yield socket_path
    finally:
        server.terminate()
        server.wait(10)


async def test_like_follows_a_unix_socket_url(unix_redis: Path) -> None:
    async with Redis.from_url(f"unix://{unix_redis}?db=2") as plain:
        await _lean_like_writes_where_it_reads(plain)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server speaking TLS only, with a self-signed certificate for localhost."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    args = [redis_binary(), "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
            "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
            "--save", "", "--dir", str(tmp_path)]  # fmt: skip
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):  # until it accepts connections (a plain PING gets no answer on TLS)
            if server.poll() is not None:
                pytest.skip("this redis-server has no TLS support")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
                break
            time.sleep(0.05)
        yield port, cert
    finally:
        server.terminate()
        server.wait(10)


async def test_like_follows_a_tls_url_and_checks_the_certificate(tls_redis: tuple[int, Path]) -> None:
    port, cert = tls_redis
    async with Redis.from_url(f"rediss://localhost:{port}/1?ssl_ca_certs={cert}") as plain:
        await _lean_like_writes_where_it_reads(plain)
    async with Redis.from_url(f"rediss://localhost:{port}/1") as untrusted:  # the system's CAs only
        lean = LeanRedis.like(untrusted)
        with pytest.raises(REDIS_UNAVAILABLE):
            await lean.execute(b"PING")
        await lean.aclose()
