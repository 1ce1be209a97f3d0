"""`python -m bench.clients URL`: the CPU an HTTP client spends per request on the gateway's upstream hop.

python -m bench.clients http://127.0.0.1:8002 --path /empty --seconds 2 --rounds 5

Runs in its own process (scenario 13 starts it), on uvloop like the gateway, and measures that
process's CPU (`time.process_time()`: every thread of it) per answered request, for each client in
turn, once per round in alternating order (A B C, C B A, ...), each with `concurrency` requests in
flight on a keep-alive pool against the same server. The server is not this process: its cost is
not counted. Every client sends the headers the gateway sends on a proxied read (request id and a
signed internal credential of the same length) and reads the whole small answer as bytes, as the
gateway does for answers up to 256 KiB. Prints one JSON document: client -> list of rounds.

The clients (issue 18):
- `gateway`: gateway/upstreams.py's `Upstream` itself (gateway/http1.py's pool with the gateway's
  limits and timeouts, place semaphore, circuit breaker, `request` + `read` + `release`);
- `aiohttp session`: a ClientSession with the settings the gateway used before http1.py (keep-alive
  pool, connect and read timeouts, fixed headers, no decompression, no cookie jar), called straight;
- `aiohttp no timeouts`: the same, with no sock_read/sock_connect timeout (one timer less per read);
- `aiohttp skip_auto_headers`: the same session with aiohttp's own headers left out per request
  (`skip_auto_headers`) instead of replaced by session headers;
- `aiohttp defaults`: a ClientSession as aiohttp makes it (default headers, decompression, cookie
  jar, timeouts), `session.get` in `async with` (what the gateway's options already save);
- `httpx`: httpx.AsyncClient, HTTP/1.1, pool and timeouts as the gateway's (skipped when httpx is
  not installed: `pip install -e '.[bench]'`);
- `reference (hand-written)`: a minimal keep-alive client on an asyncio Protocol with httptools'
  response parser. Not a candidate: no timeouts, no redirects, no chunked uploads, no error mapping;
  it only sizes the most a replacement of the library could save.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
import httptools
import uvloop
from yarl import URL

from bench.timing import measure
from gateway.settings import GatewaySettings
from gateway.upstreams import KEEPALIVE, Upstream
from shared import internal_auth

REQUEST_ID = "bench-0123456789abcdef"
WARMUP = 0.5  # seconds per client before the rounds
Call = Callable[[], Awaitable[None]]
Close = Callable[[], Awaitable[None]]


def _headers() -> dict[str, str]:
    """What the gateway sends on a proxied read: request id and a signed credential (signed once
    here: signing is the gateway's cost, not the client's)."""
    credential = internal_auth.sign(
        b"bench-secret-0123456789abcdef0123",
        audience="canvas",
        api_only=True,
        user_id="0" * 32,
        session_id="1" * 43,
        request_id=REQUEST_ID,
        client_ip="127.0.0.1",
    )
    return {"x-request-id": REQUEST_ID, internal_auth.HEADER: credential}


def _check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"answered {status}")


async def _gateway(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    upstream = Upstream.from_settings("canvas", base, GatewaySettings())
    await upstream.start()

    async def call() -> None:
        resp = await upstream.request("GET", path, headers=headers)
        try:
            _check(resp.status)
            await upstream.read(resp)
        finally:
            resp.release()

    return call, upstream.close


# Sent on every aiohttp call in place of aiohttp's defaults, as the gateway's session did. Given as
# session headers rather than `skip_auto_headers`, which sends every request through aiohttp's slow
# header merging (measured: the `aiohttp skip_auto_headers` client).
_SESSION_HEADERS = {"User-Agent": "canvas-verse-gateway", "Accept-Encoding": "identity"}


def _session(timeout: aiohttp.ClientTimeout) -> aiohttp.ClientSession:
    """A session with the settings the gateway's aiohttp client had (before gateway/http1.py)."""
    pool = GatewaySettings().pool_size
    connector = aiohttp.TCPConnector(limit=2 * pool, keepalive_timeout=KEEPALIVE, ttl_dns_cache=10)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        headers=_SESSION_HEADERS,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _aiohttp(
    base: str, path: str, headers: dict[str, str], *, timeouts: bool, skip_auto_headers: bool = False
) -> tuple[Call, Close]:
    """The gateway's session settings; optionally without socket timeouts, or without the
    session's headers and aiohttp's own (`skip_auto_headers`)."""
    settings = GatewaySettings()
    timeout = (
        aiohttp.ClientTimeout(
            total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
        )
        if timeouts
        else aiohttp.ClientTimeout(total=None)
    )
    session = _session(timeout)
    skipped: frozenset[str] | None = None
    if skip_auto_headers:
        session._default_headers.clear()
        skipped = frozenset({"User-Agent", "Accept-Encoding"})
    url = URL(base + path, encoded=True)

    async def call() -> None:
        resp = await session.request(
            "GET", url, headers=headers, allow_redirects=False, skip_auto_headers=skipped
        )
        try:
            _check(resp.status)
            await resp.read()
        finally:
            resp.release()

    return call, session.close


async def _aiohttp_defaults(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    session = aiohttp.ClientSession()
    url = base + path

    async def call() -> None:
        async with session.get(url, headers=headers) as resp:
            _check(resp.status)
            await resp.read()

    return call, session.close


async def _httpx(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    import httpx

    settings = GatewaySettings()
    pool = settings.pool_size
    client = httpx.AsyncClient(
        base_url=base,
        headers=_SESSION_HEADERS,
        limits=httpx.Limits(
            max_connections=2 * pool, max_keepalive_connections=2 * pool, keepalive_expiry=KEEPALIVE
        ),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout, read=settings.read_timeout, write=None, pool=settings.pool_wait
        ),
        http1=True,
        http2=False,
        follow_redirects=False,
        trust_env=False,
    )

    async def call() -> None:
        resp = await client.get(path, headers=headers)
        _check(resp.status_code)

    return call, client.aclose


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time; the answer parsed by httptools."""

    opened = 0  # connections made so far (tests/bench: a reference that reconnects measures connecting)

    def __init__(self) -> None:
        _Connection.opened += 1
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.closed = False
        self.keep_alive = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            assert self.transport is not None
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("connection closed"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))

    async def send(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.body = []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def _reference(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in (_SESSION_HEADERS | headers).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    idle: list[_Connection] = []
    places = asyncio.Semaphore(2 * GatewaySettings().pool_size)
    loop = asyncio.get_running_loop()

    async def call() -> None:
        async with places:
            conn = None
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    break
                conn = None
            if conn is None:
                _, conn = await loop.create_connection(_Connection, host, port)
            status, _body = await conn.send(request)
            if not conn.closed and conn.keep_alive:
                idle.append(conn)
            elif conn.transport is not None:
                conn.transport.close()
            _check(status)

    async def close() -> None:
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()

    return call, close


Factory = Callable[[str, str, dict[str, str]], Awaitable[tuple[Call, Close]]]


async def _aiohttp_timed(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    return await _aiohttp(base, path, headers, timeouts=True)


async def _aiohttp_untimed(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    return await _aiohttp(base, path, headers, timeouts=False)


async def _aiohttp_skip_headers(base: str, path: str, headers: dict[str, str]) -> tuple[Call, Close]:
    return await _aiohttp(base, path, headers, timeouts=True, skip_auto_headers=True)


CLIENTS: dict[str, Factory] = {
    "gateway (Upstream)": _gateway,
    "aiohttp session": _aiohttp_timed,
    "aiohttp no timeouts": _aiohttp_untimed,
    "aiohttp skip_auto_headers": _aiohttp_skip_headers,
    "aiohttp defaults": _aiohttp_defaults,
    "httpx": _httpx,
    "reference (hand-written)": _reference,
}


def available() -> list[str]:
    try:
        import httpx  # noqa: F401
    except ImportError:
        return [name for name in CLIENTS if name != "httpx"]
    return list(CLIENTS)


async def _round(call: Call, seconds: float, concurrency: int) -> dict[str, float]:
    errors = 0

    async def counted() -> None:
        nonlocal errors
        try:
            await call()
        except Exception:  # counted; the scenario reports the share
            errors += 1

    began = time.process_time()
    figures = await measure(counted, seconds, concurrency)
    figures["cpu_seconds"] = time.process_time() - began
    figures["errors"] = errors
    return figures


async def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    headers = _headers()
    names = args.clients or available()
    clients = {name: await CLIENTS[name](args.url.rstrip("/"), args.path, headers) for name in names}
    try:
        for call, _ in clients.values():
            await _round(call, WARMUP, args.concurrency)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for round_no in range(args.rounds):
            order = names if round_no % 2 == 0 else list(reversed(names))
            for name in order:
                results[name].append(await _round(clients[name][0], args.seconds, args.concurrency))
        return results
    finally:
        for _, close in clients.values():
            await close()


def per_request_us(figures: dict[str, float]) -> float:
    answered = figures["operations"] - figures["errors"]
    return figures["cpu_seconds"] / answered * 1e6 if answered > 0 else float("nan")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8002")
    parser.add_argument("--path", default="/empty")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per client per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--clients", nargs="*", choices=sorted(CLIENTS), help="default: all available")
    parser.add_argument("--json", action="store_true", help="print the raw rounds as JSON")
    args = parser.parse_args(argv)
    results: dict[str, Any] = uvloop.run(run(args))
    if args.json:
        print(json.dumps(results))
        return
    for name, rounds in results.items():
        costs = [per_request_us(r) for r in rounds]
        rates = [r["operations"] / r["seconds"] for r in rounds]
        print(
            f"{name}: {statistics.median(costs):.0f} µs CPU/req (rounds {min(costs):.0f}-{max(costs):.0f}), "
            f"{statistics.median(rates):,.0f} req/s, errors {sum(int(r['errors']) for r in rounds)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
