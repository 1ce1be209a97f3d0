"""Inspect and replay dead-lettered user events.

    python -m services.canvas.deadletters list [ID...]      # the dead letters (all when no ID), oldest first
    python -m services.canvas.deadletters replay [ID...]    # back onto user-events (all when no ID)

A replayed event is handled again by the consumer group; handling is idempotent. Each entry is one
JSON line on stdout; when there is none, a line on stderr says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from services.canvas.settings import from_environment
from services.canvas.streams import dead_letters, replay_dead_letters
from shared.events import DEAD_LETTER_STREAM
from shared.redis import BACKGROUND, REDIS_UNAVAILABLE, redis_client


async def run(command: str, ids: list[str], redis_url: str) -> list[dict[str, str]]:
    redis = redis_client(redis_url, BACKGROUND)
    try:
        if command == "list":
            return [
                {"id": entry_id, **{k.decode(): v.decode(errors="replace") for k, v in fields.items()}}
                for entry_id, fields in await dead_letters(redis, DEAD_LETTER_STREAM, ids)
            ]
        replayed = await replay_dead_letters(redis, DEAD_LETTER_STREAM, ids)
        return [{"id": dead_id, "replayedAs": new_id} for dead_id, new_id in replayed.items()]
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.canvas.deadletters",
        description="Inspect and replay the user events that failed CANVAS_MAX_DELIVERIES times.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="list|replay")
    for name, text in (
        ("list", "show the dead letters (all when no ID), oldest first"),
        ("replay", "put them back on user-events (all when no ID)"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("ids", nargs="*", metavar="ID", help="dead-letter entry id")
    args = parser.parse_args(argv)
    config = from_environment()
    try:
        lines = asyncio.run(run(args.command, args.ids, config.redis_url))
    except REDIS_UNAVAILABLE as exc:
        sys.stderr.write(f"Redis at {config.redis_url} did not answer ({exc}); is the system running?\n")
        return 1
    for line in lines:
        sys.stdout.write(json.dumps(line) + "\n")
    if not lines:
        what = "no dead letters" if args.command == "list" else "nothing replayed: no dead letters"
        sys.stderr.write(f"{what}{' with those ids' if args.ids else ''} in {DEAD_LETTER_STREAM}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
