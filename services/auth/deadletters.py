"""Inspect and replay dead-lettered mails (the event dead letters' tool, for the mail outbox).

    python -m services.auth.deadletters list [ID...]      # the dead mails (all when no ID), oldest first
    python -m services.auth.deadletters replay [ID...]    # back in line to be sent (all when no ID)

An entry names the mail (its outbox id and kind, never its text or link) and the SMTP server's last
answer. A replayed mail is sent again by the relay with its attempts reset; a mail whose link token
expired meanwhile is then dropped instead (services.auth.mailer). Each entry is one JSON line on
stdout; when there is none, a line on stderr says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from services.auth.mailer import DEAD_LETTER_STREAM
from services.auth.settings import from_environment
from shared.dead_letters import command
from shared.redis import BACKGROUND, REDIS_UNAVAILABLE, redis_client


async def run(verb: str, ids: list[str], redis_url: str) -> list[dict[str, str]]:
    redis = redis_client(redis_url, BACKGROUND)
    try:
        return await command(redis, DEAD_LETTER_STREAM, verb, ids)
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.auth.deadletters",
        description="Inspect and replay the mails the SMTP server refused AUTH_MAIL_MAX_ATTEMPTS times.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="list|replay")
    for name, text in (
        ("list", "show the dead mails (all when no ID), oldest first"),
        ("replay", "put them back in line to be sent (all when no ID)"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("ids", nargs="*", metavar="ID", help="dead-letter entry id")
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
