"""Mail: the requests written to the mail outbox, the plain-text messages, and SMTP delivery.

A change that needs a mail calls `enqueue` inside its own transaction, so the mail exists if and
only if the change commits. The relay (services.auth.mailer) renders and sends it later; the
outbox row never holds a token (mail_tokens.py says how the sender gets it).
"""

from __future__ import annotations

import ssl
import textwrap
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from services.auth.tables import MailOutbox

# The kinds of mail, with the token purpose of those that carry a link.
VERIFY_EMAIL = "verify-email"
PASSWORD_RESET = "password-reset"  # noqa: S105 - a mail kind
PASSWORD_CHANGED = "password-changed"  # noqa: S105 - a mail kind
EMAIL_CHANGED = "email-changed"
KINDS = (VERIFY_EMAIL, PASSWORD_RESET, PASSWORD_CHANGED, EMAIL_CHANGED)
WITH_LINK = (VERIFY_EMAIL, PASSWORD_RESET)


async def enqueue(kind: str, recipient: str, now: datetime, *, token_id: uuid.UUID | None = None) -> None:
    """Write a mail request; call inside the transaction of the change that asks for it."""
    payload: dict[str, Any] = {} if token_id is None else {"tokenId": str(token_id)}
    await MailOutbox.insert(
        MailOutbox(kind=kind, recipient=recipient, payload=payload, created_at=now, next_attempt_at=now)
    ).run()


def _link(base_url: str, page: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/{page}?token={token}"


def compose(kind: str, recipient: str, *, sender: str, base_url: str, token: str | None) -> EmailMessage:
    """The plain-text message of one mail; `token` is required for the kinds with a link."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Message-ID"] = make_msgid(domain="canvas-verse")
    if kind == VERIFY_EMAIL:
        assert token is not None
        message["Subject"] = "Confirm your email address"
        body = (
            "Confirm that this address belongs to your Canvas-Verse account by opening this link:\n\n"
            f"{_link(base_url, 'verify-email', token)}\n\n"
            "The link works once and expires in 24 hours. If you did not ask for it, ignore this mail."
        )
    elif kind == PASSWORD_RESET:
        assert token is not None
        message["Subject"] = "Reset your password"
        body = (
            "Someone asked to reset the password of your Canvas-Verse account. To choose a new one, "
            f"open this link:\n\n{_link(base_url, 'reset-password', token)}\n\n"
            "The link works once and expires in 1 hour; every session of the account is signed out. "
            "If you did not ask for it, ignore this mail: your password stays as it is."
        )
    elif kind == PASSWORD_CHANGED:
        message["Subject"] = "Your password was changed"
        body = (
            "The password of your Canvas-Verse account was just changed. If this was not you, "
            f"reset it now:\n\n{base_url.rstrip('/')}/reset-password"
        )
    elif kind == EMAIL_CHANGED:
        message["Subject"] = "Your email address was changed"
        body = (
            "The email address of your Canvas-Verse account was just changed away from this one, "
            "which will get no more mail about the account. If this was not you, contact support."
        )
    else:
        raise ValueError(f"unknown mail kind {kind!r}")
    # Paragraphs wrapped at 72 columns and each link on a line of its own, sent as 7bit: the link
    # stays readable and copyable in the raw mail (quoted-printable would turn `=` into `=3D`).
    paragraphs = [p if "://" in p else textwrap.fill(p, 72) for p in body.split("\n\n")]
    message.set_content("\n\n".join(paragraphs) + "\n", cte="7bit")
    return message


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where SMTP_URL points: smtp:// (STARTTLS when the server offers it) or smtps:// (implicit TLS)."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname or "localhost",
            port=parts.port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit_tls,
        )

    async def send(self, message: EmailMessage, *, seconds: float, tls: ssl.SSLContext | None = None) -> None:
        """One connection, one message. aiosmtplib's `start_tls=None` upgrades with STARTTLS
        exactly when the server offers it; raises aiosmtplib.SMTPException or OSError."""
        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.implicit_tls,
            start_tls=None if not self.implicit_tls else False,
            tls_context=tls,
            timeout=seconds,  # per connection and command: a silent server fails, never hangs
        )
