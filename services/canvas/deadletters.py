"""Inspect and replay dead-lettered user events.

    python -m services.canvas.deadletters list [ID...]      # the dead letters (all when no ID), oldest first
    python -m services.canvas.deadletters replay [ID...]    # back onto user-events (all when no ID)

A replayed event is handled again by the consumer group; handling is idempotent. Each entry is one
JSON line on stdout; when there is none, a line on stderr says so.
"""

from __future__ import annotations

import sys

from services.canvas.settings import from_environment
from shared import dead_letters
from shared.events import DEAD_LETTER_STREAM


async def run(verb: str, ids: list[str], redis_url: str) -> list[dict[str, str]]:
    return await dead_letters.run(verb, ids, redis_url, DEAD_LETTER_STREAM)


def main(argv: list[str] | None = None) -> int:
    return dead_letters.cli(
        argv,
        prog="python -m services.canvas.deadletters",
        description="Inspect and replay the user events that failed CANVAS_MAX_DELIVERIES times.",
        help_texts=(
            "show the dead letters (all when no ID), oldest first",
            "put them back on user-events (all when no ID)",
        ),
        dead_letter_stream=DEAD_LETTER_STREAM,
        redis_url=from_environment().redis_url,
    )


if __name__ == "__main__":
    sys.exit(main())
