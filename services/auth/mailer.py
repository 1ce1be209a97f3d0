"""The mail sender, run by the relay beside the event loop: mail outbox rows out over SMTP.

Each pass claims the due rows (sent_at and dead_at null, next_attempt_at passed) by pushing their
next_attempt_at a lease ahead in one short UPDATE ... RETURNING, so no write transaction is held
while SMTP talks and two senders never claim the same row at once; sends each mail (aiosmtplib, one
connection per mail); marks it sent. A crash between the server's "250" and the mark sends that mail
again once its lease ends: at least once, and once in normal operation.

Failures:
- the server cannot be reached (refused, timeout, disconnect, 421): nothing counts against the mail;
  the claimed rows are released and the sender backs off (doubling up to AUTH_MAIL_RETRY_MAX), so an
  outage of any length delays mail and loses none;
- the server answers this mail with an error (a 4xx or 5xx reply to MAIL, RCPT or DATA): the mail's
  `attempts` grows and it waits 30 s, 60 s, 120 s, ...; after AUTH_MAIL_MAX_ATTEMPTS it is
  dead-lettered: marked dead and copied to the `mail:dead` Redis stream, in the dead-letter format
  of the event streams, so `python -m services.auth.deadletters list|replay` works like the canvas
  service's tool (a replay puts the mail back in line with its attempts reset).

A mail whose link token is gone, used or expired by the time it would go out (a newer reset
superseded it while SMTP was down, say) is not sent: its link could only fail. A reset requested for
an address with no account is never sent either (recovery.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib
import structlog
from redis.asyncio import Redis

from services.auth import mail, mail_tokens
from services.auth.settings import AuthSettings
from services.auth.tables import MailOutbox
from shared.dead_letters import CONSUMER, DELIVERIES, ERROR, SOURCE_ID, SOURCE_STREAM
from shared.loops import wait_or_stop
from shared.redis import REDIS_UNAVAILABLE
from shared.timeutil import utcnow

log = structlog.get_logger()

DEAD_LETTER_STREAM = "mail:dead"
REPLAY_STREAM = "mail:replay"  # where `deadletters replay` puts a mail back; the sender re-queues it
LEASE = timedelta(minutes=2)  # a claimed row is retried after this if its sender died
FIRST_RETRY = 30.0  # seconds before a mail the server refused is tried again; doubles each time
BATCH = 20
_UNREACHABLE = (
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    OSError,
    TimeoutError,
)


class ServerUnreachable(Exception):
    """The SMTP server could not be reached or dropped the connection: nothing is the mail's fault."""


class Undeliverable(Exception):
    """The mail can never be sent as it is: dead-letter it now."""


@dataclass
class Mailer:
    settings: AuthSettings
    redis: Redis
    clock: Any = utcnow

    def __post_init__(self) -> None:
        self.server = mail.SmtpServer.from_url(self.settings.smtp_url)

    async def claim(self, now: datetime, limit: int = BATCH) -> list[dict[str, Any]]:
        due = (
            (MailOutbox.next_attempt_at <= now) & MailOutbox.sent_at.is_null() & MailOutbox.dead_at.is_null()
        )
        oldest = MailOutbox.select(MailOutbox.id).where(due).order_by(MailOutbox.id).limit(limit)
        rows: list[dict[str, Any]] = (
            await MailOutbox.update({MailOutbox.next_attempt_at: now + LEASE})
            .where(MailOutbox.id.is_in(oldest) & due)  # `due` again: a row another sender took is left
            .returning(
                MailOutbox.id, MailOutbox.kind, MailOutbox.recipient, MailOutbox.payload, MailOutbox.attempts
            )
            .run()
        )
        return sorted(rows, key=lambda row: row["id"])

    async def send_due(self) -> int:
        """One pass: send every due mail; returns how many went out. Raises ServerUnreachable (after
        releasing the rows it claimed) when the SMTP server cannot be reached."""
        rows = await self.claim(self.clock())
        sent = 0
        for index, row in enumerate(rows):
            try:
                sent += await self.deliver(row)
            except ServerUnreachable:
                pending = [r["id"] for r in rows[index:]]
                await (
                    MailOutbox.update({MailOutbox.next_attempt_at: self.clock()})
                    .where(MailOutbox.id.is_in(pending))
                    .run()
                )
                raise
        return sent

    async def deliver(self, row: dict[str, Any]) -> int:
        """Send one claimed mail; 1 when it went out, 0 when skipped or failed."""
        try:
            token, skip = await self._token(row)
        except Undeliverable as exc:
            await self._refused(row, str(exc), final=True)
            return 0
        if skip:
            await self._finish(row, note=skip)
            return 0
        message = mail.compose(
            row["kind"],
            row["recipient"],
            sender=self.settings.mail_from,
            base_url=self.settings.app_base_url,
            token=token,
        )
        try:
            await self.server.send(message, seconds=self.settings.mail_timeout)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # "service not available, closing channel": the server, not the mail
                raise ServerUnreachable(str(exc)) from exc
            await self._refused(row, f"{exc.code} {exc.message}")
            return 0
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # The replies without the address: dead letters name the mail, not the person.
            replies = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            await self._refused(row, f"recipient refused: {replies}")
            return 0
        except _UNREACHABLE as exc:
            raise ServerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except aiosmtplib.SMTPException as exc:  # anything else the client raises: count it on the mail
            await self._refused(row, f"{type(exc).__name__}: {exc}")
            return 0
        await self._finish(row)
        log.info("mail_sent", mail_id=row["id"], kind=row["kind"])
        return 1

    async def _token(self, row: dict[str, Any]) -> tuple[str | None, str | None]:
        """(the token for the mail's link, None) or (None, why the mail is not sent)."""
        payload = row["payload"]
        payload = (json.loads(payload) if payload else {}) if isinstance(payload, str | bytes) else payload
        token_id = payload.get("tokenId")
        if token_id is None:
            if row["kind"] in mail.WITH_LINK:
                raise Undeliverable(f"a {row['kind']} mail without a token")
            return None, None
        found = await mail_tokens.get(uuid.UUID(token_id))
        if found is None or found["user_id"] is None:
            return None, "no account" if found is not None else "token gone"
        if found["used_at"] is not None or found["expires_at"] <= self.clock():
            return None, "token used, superseded or expired before sending"
        token = mail_tokens.token_for(found["id"], self.settings.secret)
        if mail_tokens.hash_of(token) != found["token_hash"]:  # INTERNAL_SECRET changed since issue
            raise Undeliverable("INTERNAL_SECRET changed since the token was issued")
        return token, None

    async def _finish(self, row: dict[str, Any], note: str | None = None) -> None:
        await (
            MailOutbox.update({MailOutbox.sent_at: self.clock(), MailOutbox.last_error: note})
            .where(MailOutbox.id == row["id"])
            .run()
        )
        if note:
            log.info("mail_not_sent", mail_id=row["id"], kind=row["kind"], reason=note)

    async def _refused(self, row: dict[str, Any], error: str, *, final: bool = False) -> None:
        attempts = row["attempts"] + 1
        now = self.clock()
        if final or attempts >= self.settings.mail_max_attempts:
            try:
                await self._dead_letter(row, attempts, error)
            except REDIS_UNAVAILABLE as exc:  # cannot dead-letter now: try the mail again later instead
                log.error("mail_dead_letter_failed", mail_id=row["id"], error=str(exc))
            else:
                changes: dict[Any, Any] = {
                    MailOutbox.attempts: attempts,
                    MailOutbox.last_error: error,
                    MailOutbox.dead_at: now,
                }
                await MailOutbox.update(changes).where(MailOutbox.id == row["id"]).run()
                log.error("mail_dead_lettered", mail_id=row["id"], kind=row["kind"], error=error)
                return
        retry = now + timedelta(seconds=FIRST_RETRY * 2 ** (attempts - 1))
        await (
            MailOutbox.update(
                {
                    MailOutbox.attempts: attempts,
                    MailOutbox.last_error: error,
                    MailOutbox.next_attempt_at: retry,
                }
            )
            .where(MailOutbox.id == row["id"])
            .run()
        )
        log.warning("mail_refused", mail_id=row["id"], kind=row["kind"], attempts=attempts, error=error)

    async def _dead_letter(self, row: dict[str, Any], attempts: int, error: str) -> None:
        # The event streams' dead-letter format: the original fields plus where it came from and why.
        letter = {
            b"mail": str(row["id"]).encode(),
            b"kind": row["kind"].encode(),
            SOURCE_STREAM: REPLAY_STREAM.encode(),
            SOURCE_ID: str(row["id"]).encode(),
            ERROR: error[:2000].encode(),
            DELIVERIES: str(attempts).encode(),
            CONSUMER: b"mailer",
        }
        await self.redis.xadd(DEAD_LETTER_STREAM, letter)  # type: ignore[arg-type]

    async def requeue_replayed(self) -> int:
        """Put the mails `deadletters replay` sent back in line again (attempts reset)."""
        entries: list[Any] = await self.redis.xrange(REPLAY_STREAM, count=100) or []
        for entry_id, fields in entries:
            mail_id = int((fields or {}).get(b"mail", b"0"))
            await (
                MailOutbox.update(
                    {
                        MailOutbox.dead_at: None,
                        MailOutbox.attempts: 0,
                        MailOutbox.next_attempt_at: self.clock(),
                        MailOutbox.sent_at: None,
                    }
                )
                .where((MailOutbox.id == mail_id) & MailOutbox.dead_at.is_not_null())
                .run()
            )
            await self.redis.xdel(REPLAY_STREAM, entry_id)
            log.info("mail_replayed", mail_id=mail_id)
        return len(entries)

    async def has_due(self) -> bool:
        now = self.clock()
        return bool(
            await MailOutbox.exists()
            .where(
                (MailOutbox.next_attempt_at <= now)
                & MailOutbox.sent_at.is_null()
                & MailOutbox.dead_at.is_null()
            )
            .run()
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Send mail until `stop` is set; back off while the SMTP server (or a database) is down."""
        idle = self.settings.relay_interval
        backoff = idle
        while not stop.is_set():
            try:
                await self.requeue_replayed()
            except REDIS_UNAVAILABLE as exc:  # replays wait for Redis; mail does not
                log.warning("mail_replay_check_failed", error=str(exc))
            try:
                sent = await self.send_due() if await self.has_due() else 0
            except ServerUnreachable as exc:
                log.warning("smtp_unreachable", error=str(exc), retry_in=backoff)
                delay, backoff = backoff, min(backoff * 2, self.settings.mail_retry_max)
            except Exception as exc:  # the database or Redis is down: wait, then retry
                log.warning("mailer_failed", error=f"{type(exc).__name__}: {exc}", retry_in=backoff)
                delay, backoff = backoff, min(backoff * 2, self.settings.mail_retry_max)
            else:
                backoff = idle
                delay = 0 if sent == BATCH else idle
            await wait_or_stop(stop, delay)


async def prune(before: datetime, limit: int = 1000) -> int:
    """Delete mails sent (or given up on and replayed never) before `before`; unsent rows never."""
    oldest = (
        MailOutbox.select(MailOutbox.id)
        .where(MailOutbox.sent_at < before)
        .order_by(MailOutbox.id)
        .limit(limit)
    )
    deleted = await MailOutbox.delete().where(MailOutbox.id.is_in(oldest)).returning(MailOutbox.id).run()
    return len(deleted)
