"""A bare ASGI app for tests/shared/test_fair_reading.py, served like every app (shared/server.py's
protocol): each request gets the next number of the order the app saw requests in.

- `GET /seq`: that number.
- `GET /block`: holds the whole event loop (a blocking sleep) until the file named by
  `FAIR_RELEASE_FILE` exists, after creating `FAIR_BLOCKED_FILE`: a test queues requests meanwhile,
  so that they are all ready in the same loop turn once it is released.
- `POST /echo`: the body's length and SHA-256.
- `GET /waiting`: connections waiting for a turn in shared/server.py's fair reading.
- `POST /refuse` (a plain request with a Content-Length): refused from its raw bytes by the
  protocol (`state.raw_refusals`), 429 with the next number as its body.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from shared.server import fair_reading

_seen = [0]


def hold_the_loop() -> None:
    """Blocks the event loop on purpose (called from the app, not awaited)."""
    Path(os.environ["FAIR_BLOCKED_FILE"]).touch()
    release = Path(os.environ["FAIR_RELEASE_FILE"])
    give_up = time.monotonic() + 60
    while not release.exists() and time.monotonic() < give_up:
        time.sleep(0.01)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    _seen[0] += 1
    path = scope["path"]
    if path == "/block":
        hold_the_loop()
        answer = b"released"
    elif path == "/echo":
        answer = b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
    elif path == "/waiting":
        fair = fair_reading(asyncio.get_running_loop())
        answer = b"%d" % (sum(len(line) for line in fair.waiting.values()) if fair else 0)
    else:
        answer = b"%d" % _seen[0]
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


class _Refusals:
    """shared/server.py's `raw_refusals` hook: every `POST /refuse` is refused, and numbered in the
    same order as the requests the app sees."""

    def raw_targets(self) -> frozenset[bytes]:
        return frozenset({b"POST /refuse"})

    def raw_refusal(self, target: bytes, peer: str, request_id: bytes) -> bytes | None:
        _seen[0] += 1
        body = b"%d" % _seen[0]
        return b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


app.state = SimpleNamespace(raw_refusals=_Refusals())  # type: ignore[attr-defined]
