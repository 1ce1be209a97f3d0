"""Dead letters: entries (events, mails) that kept failing, kept in a Redis stream for an operator.

The format is shared by every service: the original entry's fields plus where it came from
(`dead-letter:stream`, `dead-letter:id`), why it failed and how often. `replay_dead_letters` puts an
entry back on its source stream, where the service that owns it handles it again. Each service's
`deadletters` command (`python -m services.canvas.deadletters`, `python -m services.auth.deadletters`)
is these two functions over its own dead-letter stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from shared.redis import BACKGROUND, REDIS_UNAVAILABLE, redis_client

Fields = dict[bytes, bytes]

# Fields a dead-letter entry carries besides the original entry's own.
SOURCE_STREAM = b"dead-letter:stream"
SOURCE_ID = b"dead-letter:id"
ERROR = b"dead-letter:error"
DELIVERIES = b"dead-letter:deliveries"
CONSUMER = b"dead-letter:consumer"
DEAD_LETTER_FIELDS = (SOURCE_STREAM, SOURCE_ID, ERROR, DELIVERIES, CONSUMER)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def dead_letters(
    redis: Redis, dead_letter_stream: str, ids: Sequence[str] = ()
) -> list[tuple[str, Fields]]:
    """The dead-letter entries, oldest first (only `ids` when given)."""
    ranges: list[Any]
    if ids:
        ranges = [await redis.xrange(dead_letter_stream, entry_id, entry_id) for entry_id in ids]
    else:
        ranges = [await redis.xrange(dead_letter_stream)]
    return [(_text(entry_id), fields) for found in ranges for entry_id, fields in found]


async def replay_dead_letters(
    redis: Redis, dead_letter_stream: str, ids: Sequence[str] = ()
) -> dict[str, str]:
    """Put dead letters back on their source streams (and remove them); returns dead id -> new id."""
    replayed = {}
    for dead_id, fields in await dead_letters(redis, dead_letter_stream, ids):
        original = {k: v for k, v in fields.items() if k not in DEAD_LETTER_FIELDS}
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(_text(fields[SOURCE_STREAM]), original)  # type: ignore[arg-type]
            pipe.xdel(dead_letter_stream, dead_id)
            new_id, _ = await pipe.execute()
        replayed[dead_id] = _text(new_id)
    return replayed


async def command(redis: Redis, dead_letter_stream: str, verb: str, ids: list[str]) -> list[dict[str, str]]:
    """What `deadletters list|replay [ID...]` prints, one dict per line."""
    if verb == "list":
        return [
            {"id": entry_id, **{k.decode(): v.decode(errors="replace") for k, v in fields.items()}}
            for entry_id, fields in await dead_letters(redis, dead_letter_stream, ids)
        ]
    replayed = await replay_dead_letters(redis, dead_letter_stream, ids)
    return [{"id": dead_id, "replayedAs": new_id} for dead_id, new_id in replayed.items()]


async def run(verb: str, ids: list[str], redis_url: str, dead_letter_stream: str) -> list[dict[str, str]]:
    """`command` with a client of its own."""
    redis = redis_client(redis_url, BACKGROUND)
    try:
        return await command(redis, dead_letter_stream, verb, ids)
    finally:
        await redis.aclose()


def cli(
    argv: list[str] | None,
    *,
    prog: str,
    description: str,
    help_texts: tuple[str, str],
    dead_letter_stream: str,
    redis_url: str,
) -> int:
    """A service's `deadletters list|replay [ID...]` command: one JSON line per entry."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True, metavar="list|replay")
    for name, text in zip(("list", "replay"), help_texts, strict=True):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("ids", nargs="*", metavar="ID", help="dead-letter entry id")
    args = parser.parse_args(argv)
    try:
        lines = asyncio.run(run(args.command, args.ids, redis_url, dead_letter_stream))
    except REDIS_UNAVAILABLE as exc:
        sys.stderr.write(f"Redis at {redis_url} did not answer ({exc}); is the system running?\n")
        return 1
    for line in lines:
        sys.stdout.write(json.dumps(line) + "\n")
    if not lines:
        what = "no dead letters" if args.command == "list" else "nothing replayed: no dead letters"
        sys.stderr.write(f"{what}{' with those ids' if args.ids else ''} in {dead_letter_stream}\n")
    return 0
