"""Inspect and replay dead-lettered mails (the event dead letters' tool, for the mail outbox).

    python -m services.auth.deadletters list [ID...]      # the dead mails (all when no ID), oldest first
    python -m services.auth.deadletters replay [ID...]    # back in line to be sent (all when no ID)

An entry names the mail (its outbox id and kind, never its text or link) and the SMTP server's last
answer. A replayed mail is sent again by the relay with its attempts reset; a mail whose link token
expired meanwhile is then dropped instead (services.auth.mailer).
"""

from __future__ import annotations

import asyncio
import json
import sys

from services.auth.mailer import DEAD_LETTER_STREAM
from services.auth.settings import from_environment
from shared.dead_letters import command
from shared.redis import BACKGROUND, redis_client

USAGE = "usage: python -m services.auth.deadletters list|replay [ID...]"


async def run(verb: str, ids: list[str], redis_url: str) -> list[dict[str, str]]:
    redis = redis_client(redis_url, BACKGROUND)
    try:
        return await command(redis, DEAD_LETTER_STREAM, verb, ids)
    finally:
        await redis.aclose()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("list", "replay"):
        sys.stderr.write(USAGE + "\n")
        return 2
    for line in asyncio.run(run(argv[0], argv[1:], from_environment().redis_url)):
        sys.stdout.write(json.dumps(line) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
