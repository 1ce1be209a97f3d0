"""Inspect and replay dead-lettered mails (the event dead letters' tool, for the mail outbox).

    python -m services.auth.deadletters list [ID...]      # the dead mails (all when no ID), oldest first
    python -m services.auth.deadletters replay [ID...]    # back in line to be sent (all when no ID)

An entry names the mail (its outbox id and kind, never its text or link) and the SMTP server's last
answer. A replayed mail is sent again by the relay with its attempts reset; a mail whose link token
expired meanwhile is then dropped instead (services.auth.mailer). Each entry is one JSON line on
stdout; when there is none, a line on stderr says so.
"""

from __future__ import annotations

import sys

from services.auth.mailer import DEAD_LETTER_STREAM
from services.auth.settings import from_environment
from shared import dead_letters


async def run(verb: str, ids: list[str], redis_url: str) -> list[dict[str, str]]:
    return await dead_letters.run(verb, ids, redis_url, DEAD_LETTER_STREAM)


def main(argv: list[str] | None = None) -> int:
    return dead_letters.cli(
        argv,
        prog="python -m services.auth.deadletters",
        description="Inspect and replay the mails the SMTP server refused AUTH_MAIL_MAX_ATTEMPTS times.",
        help_texts=(
            "show the dead mails (all when no ID), oldest first",
            "put them back in line to be sent (all when no ID)",
        ),
        dead_letter_stream=DEAD_LETTER_STREAM,
        redis_url=from_environment().redis_url,
    )


if __name__ == "__main__":
    sys.exit(main())
