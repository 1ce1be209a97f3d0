"""Inspect and replay dead-lettered user events.

    python -m services.canvas.deadletters list [ID...]      # the dead letters (all when no ID), oldest first
    python -m services.canvas.deadletters replay [ID...]    # back onto user-events (all when no ID)

A replayed event is handled again by the consumer group; handling is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import sys

from services.canvas.settings import settings
from services.canvas.streams import dead_letters, replay_dead_letters
from shared.events import DEAD_LETTER_STREAM
from shared.redis import BACKGROUND, redis_client

USAGE = "usage: python -m services.canvas.deadletters list|replay [ID...]"


async def run(command: str, ids: list[str], redis_url: str = settings.redis_url) -> list[dict[str, str]]:
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


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("list", "replay"):
        sys.stderr.write(USAGE + "\n")
        return 2
    for line in asyncio.run(run(argv[0], argv[1:])):
        sys.stdout.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
