"""A lean Redis client for the two calls every request makes (hand-written, on hiredis): the canvas
read cache's hit script and the gateway's session lookup.

redis-py spends ~100 µs of CPU on one command (packing in Python, a connection taken from and
returned to the pool, retry and timeout wrappers, one send and one receive per command): about half
of the canvas service's CPU per cached read. This client does the same call in a fraction of that
(bench/FINDINGS.md, "2026-12-06: the Redis calls on the request path without redis-py"); redis-py
stays for everything else:

- one connection per client, shared by every caller: commands are pipelined, and what the callers
  of one event-loop turn send leaves in one write;
- commands packed by `hiredis.pack_command` and replies parsed by `hiredis.Reader` (C); replies
  come back in order, so each resolves the oldest waiting future;
- a command waiting longer than `socket_timeout` fails with redis-py's `TimeoutError` and the
  connection is dropped (its replies can no longer be matched); a broken or refused connection fails
  what waits on it with redis-py's `ConnectionError`. Both are in `shared.redis.REDIS_UNAVAILABLE`.
  Nothing is retried unless the caller says the command may run twice (`retry=True`, a read): a
  command in flight may have run (a counted view);
- the next call after a loss connects again (one connection attempt shared by concurrent callers),
  with the address (TCP, TLS or a Unix socket), database, credentials and timeouts of the redis-py
  client it was made `like`;
- a script is sent by EVALSHA, and by EVAL (which loads it) when Redis answers NOSCRIPT;
- `subscriber()` opens a connection of its own for pub/sub (the gateway's session invalidations):
  messages go to a callback as they are read, in Redis's order.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = Any  # bytes, int, a list of replies, None, or a ResponseError instance for an error reply


class LeanScript:
    """A Lua script and its SHA1, as EVALSHA names it."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source, usedforsecurity=False).hexdigest().encode()


class _Connection(asyncio.Protocol):
    """One pipelined connection: futures wait in send order; the oldest has a deadline.

    `on_message`: on a subscriber's connection, each pub/sub `message` (which answers no command)
    goes to this callback, from the event loop's read callback, in the order Redis sent it."""

    def __init__(self, timeout: float | None, on_message: Callable[[Reply], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._on_message = on_message
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=ResponseError)
        self._waiting: deque[tuple[float, asyncio.Future[Reply]]] = deque()
        self._out: list[bytes] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, packed: bytes) -> asyncio.Future[Reply]:
        if self.lost is not None:
            raise self.lost
        future: asyncio.Future[Reply] = self._loop.create_future()
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(packed)
        if self._timeout is not None:
            self._waiting.append((self._loop.time() + self._timeout, future))
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._timeout, self._check_deadline)
        else:
            self._waiting.append((0.0, future))
        return future

    def _flush(self) -> None:
        if self._transport is not None and self.lost is None:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                if self._on_message is not None and type(reply) is list and reply[0] == b"message":
                    self._on_message(reply)
                    continue
                future = self._waiting.popleft()[1]
                if future.done():  # its caller was cancelled
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (InvalidResponse, IndexError) as exc:  # a reply nobody asked for, or unparsable
            self._abort(RedisConnectionError(f"Redis protocol error: {exc}"))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        deadline = self._waiting[0][0]
        late = deadline - self._loop.time()
        if late <= 0:
            self._abort(RedisTimeoutError("Timeout reading from Redis"))
        else:
            self._watchdog = self._loop.call_later(late, self._check_deadline)

    def _abort(self, error: Exception) -> None:
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed by the server'}"))

    def _fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future = self._waiting.popleft()[1]
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self._fail(RedisConnectionError("Connection to Redis closed"))
        if self._transport is not None:
            self._transport.close()


async def _open_tcp(
    factory: Callable[[], _Connection], *, host: str, port: int, tls: ssl.SSLContext | None
) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(factory, host, port, ssl=tls)
    return connection


async def _open_unix(factory: Callable[[], _Connection], *, path: str) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_unix_connection(factory, path)
    return connection


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _tls_context(kwargs: dict[str, Any]) -> ssl.SSLContext:
    """The TLS settings of a redis-py `rediss://` client (its `ssl_*` options) as an SSLContext."""
    context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"), capath=kwargs.get("ssl_ca_path"))
    required = kwargs.get("ssl_cert_reqs", "required")
    mode = _CERT_REQS[required] if isinstance(required, str) else ssl.VerifyMode(required)
    context.check_hostname = bool(kwargs.get("ssl_check_hostname", True)) and mode != ssl.CERT_NONE
    context.verify_mode = mode
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"), kwargs.get("ssl_password"))
    return context


Connection = _Connection  # what `LeanRedis.subscriber` returns


class LeanRedis:
    """Pipelined commands over one lazily (re)connected connection; see the module doc."""

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 6379,
        path: str | None = None,
        tls: ssl.SSLContext | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        socket_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        self._address = path or f"{host}:{port}"
        self._timeout = socket_timeout
        self._open: Callable[[Callable[[], _Connection]], Awaitable[_Connection]] = (
            functools.partial(_open_unix, path=path)
            if path
            else functools.partial(_open_tcp, host=host, port=port, tls=tls)
        )
        self._handshake = [
            *([(b"AUTH", *((username,) if username else ()), password)] if password else []),
            *([(b"SELECT", db)] if db else []),
        ]
        self._connect_timeout = connect_timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None

    @classmethod
    def like(cls, redis: Redis) -> LeanRedis:
        """Same server (TCP, TLS or a Unix socket), database, credentials and timeouts as this
        redis-py client."""
        pool = redis.connection_pool
        kwargs, kind = pool.connection_kwargs, pool.connection_class
        return cls(
            host=kwargs.get("host", "localhost"),
            port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path") if issubclass(kind, UnixDomainSocketConnection) else None,
            tls=_tls_context(kwargs) if issubclass(kind, SSLConnection) else None,
            db=int(kwargs.get("db", 0) or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            socket_timeout=kwargs.get("socket_timeout"),
            connect_timeout=kwargs.get("socket_connect_timeout"),
        )

    async def _connect(self, on_message: Callable[[Reply], None] | None = None) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                timeout = self._timeout if on_message is None else None
                connection = await self._open(functools.partial(_Connection, timeout, on_message))
        except TimeoutError as exc:
            raise RedisTimeoutError(f"Timeout connecting to Redis at {self._address}") from exc
        except OSError as exc:  # ssl.SSLError included
            raise RedisConnectionError(f"Error connecting to Redis at {self._address}: {exc}") from exc
        try:
            for command in self._handshake:
                await connection.send(hiredis.pack_command(command))
        except BaseException:
            connection.close()
            raise
        return connection

    async def subscriber(self, on_message: Callable[[Reply], None]) -> Connection:
        """A connection of its own (not the shared one), for SUBSCRIBE: every pub/sub `message` goes
        to `on_message`; `send` still answers its own commands (SUBSCRIBE, PING), with no deadline of
        its own (the caller times them). The caller closes it."""
        return await self._connect(on_message)

    async def _connected(self) -> _Connection:
        connecting = self._connecting
        if connecting is None:
            self._connecting = connecting = asyncio.ensure_future(self._connect())
            connecting.add_done_callback(self._connect_done)
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and not (task and task.cancelling()):  # aclose(), not our caller
                raise RedisConnectionError("Connection to Redis closed") from None
            raise

    def _connect_done(self, task: asyncio.Task[_Connection]) -> None:
        """Runs whether or not anyone still waits: the connection is taken, a failure forgotten."""
        if self._connecting is not task:
            return  # aclose() took it
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._connection = task.result()

    async def execute(self, *args: str | bytes | int | float, retry: bool = False) -> Reply:
        """Send one command and wait for its reply (an error reply raises `ResponseError`).

        `retry`: for a command that may safely run twice (a read), a broken connection is retried
        once at once on a new one, as redis-py's request-path policy does (a connection may have been
        closed by Redis just before the command was written)."""
        packed = hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub types a 1-tuple
        try:
            return await self._send(packed)
        except RedisConnectionError:
            if not retry:
                raise
            return await self._send(packed)

    async def _send(self, packed: bytes) -> Reply:
        connection = self._connection
        if connection is None or connection.lost is not None:
            connection = await self._connected()
        return await connection.send(packed)

    async def evalsha(
        self, script: LeanScript, keys: list[str], args: list[str | bytes | int | float]
    ) -> Reply:
        """Run `script` by its SHA1, or by its source when this Redis has not loaded it (NOSCRIPT)."""
        try:
            return await self.execute(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.execute(b"EVAL", script.source, len(keys), *keys, *args)

    async def aclose(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()  # a no-op when it is done but its callback has not run yet
            if connecting.done() and not connecting.cancelled() and connecting.exception() is None:
                connecting.result().close()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
