"""A local SMTP server that keeps every mail it receives: `make run`'s mail sink and the tests' SMTP server.

It is aiosmtpd (a real SMTP server, run by its Controller in a thread of its own): each mail is
written as an `.eml` file under `folder` (written to a temporary name, then renamed, so a reader
never sees half a mail), and `announce`, when given, is called with a one-line summary holding the
links in the mail. `python -m devtools.mail_sink --port 1025 --dir data/mail` runs one alone.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import os
import re
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

LINK = re.compile(r"https?://\S+")


class _Handler:
    def __init__(
        self, folder: Path, announce: Callable[[str], None] | None, refuse: Callable[[str], bool] | None
    ) -> None:
        self.folder = folder
        self.announce = announce
        self.refuse = refuse
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse is not None and self.refuse(address):
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content: bytes = envelope.original_content or envelope.content
        with self._lock:
            name = f"{time.time_ns()}-{next(self._numbers):06d}.eml"
        tmp = self.folder / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, self.folder / name)
        if self.announce is not None:
            message = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            body = message.get_body(("plain",))
            links = LINK.findall(body.get_content() if body is not None else "")
            recipients = ", ".join(envelope.rcpt_tos)
            self.announce(
                f"mail to {recipients}: {message['Subject']}" + "".join(f"\n    {u}" for u in links)
            )
        return "250 Message accepted for delivery"


class MailSink:
    """`start()` listens on 127.0.0.1:`port` (0: a free port, kept across stop/start). `refuse`, when
    given, names recipients the server answers with 550 (as a real server does for an unknown
    mailbox): the tests' way to make a mail fail for good."""

    def __init__(
        self,
        folder: Path,
        port: int = 0,
        announce: Callable[[str], None] | None = None,
        refuse: Callable[[str], bool] | None = None,
    ) -> None:
        self.folder = folder
        self.port = port
        self.announce = announce
        self.refuse = refuse
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> MailSink:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.port:
            from devtools.redis_server import free_port

            self.port = free_port()
        self._controller = Controller(
            _Handler(self.folder, self.announce, self.refuse),
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=10,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def mails(self) -> list[EmailMessage]:
        """Every mail received so far, oldest first."""
        found = []
        for path in sorted(self.folder.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            found.append(message)
        return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.mail_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path("data/mail"))
    args = parser.parse_args(argv)
    sink = MailSink(args.dir, args.port, announce=lambda line: print(line, flush=True)).start()
    print(f"SMTP sink on {sink.url}, mails kept in {args.dir.resolve()}; Ctrl-C stops it", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
