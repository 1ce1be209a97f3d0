"""Helpers for the auth tests: the app in-process, and callers that sign like the gateway.

Imported by test modules only (collected after tests/conftest.py configured the environment).

The app runs in the test's own event loop behind httpx's ASGI transport. Litestar 2's
AsyncTestClient runs the app and its lifespan in a second event loop in a portal thread, which
would put the PostgreSQL pool out of reach of the tests' own database calls and serialise
concurrent requests.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import msgspec
from litestar import Litestar

from devtools.mail_sink import MailSink
from services.auth.settings import AuthSettings, from_environment
from shared import internal_auth
from shared.tokens import session_id_of
from tests import asgi

PASSWORD = "correct horse battery staple"


def auth_settings(**changes: Any) -> AuthSettings:
    return msgspec.structs.replace(from_environment(), **changes)


def running(app: Litestar) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return asgi.running(app, "http://auth.test")


def signed(
    uid: str | None = None, sid: str | None = None, ip: str | None = None, now: float | None = None
) -> dict[str, str]:
    """The credential header the gateway adds."""
    value = internal_auth.sign(
        auth_settings().secret,
        audience="auth",
        user_id=uid,
        session_id=sid,
        client_ip=ip,
        request_id="test",
        now=now,
    )
    return {internal_auth.HEADER: value}


def new_ip() -> str:
    """A client address of its own, so throttling counts never leak between tests."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@dataclass
class Account:
    """A signed-up user and one of their sessions."""

    email: str
    password: str
    user: dict[str, Any]
    token: str
    expires_at: str
    others: list[str] = field(default_factory=list)

    @property
    def uid(self) -> str:
        return str(self.user["id"])

    @property
    def sid(self) -> str:
        return session_id_of(self.token)


class Api:
    """Calls the auth service the way the gateway does (signed credential; session resolved)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.ip: str | None = new_ip()  # the client address the gateway saw

    async def call(
        self,
        method: str,
        path: str,
        *,
        session: Account | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        token = token or (session.token if session else None)
        uid = session.uid if session else None
        sid = session_id_of(token) if token else None
        headers = {**signed(uid, sid, self.ip), **kwargs.pop("headers", {})}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def signup(self, email: str, password: str = PASSWORD, **fields: Any) -> Account:
        resp = await self.call(
            "POST", "/api/auth/signup", json={"email": email, "password": password, **fields}
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Account(email, password, body["user"], body["token"], body["expiresAt"])

    async def login(self, account: Account, **kwargs: Any) -> httpx.Response:
        body = {"email": account.email, "password": account.password}
        return await self.call("POST", "/api/auth/login", json=body, **kwargs)

    async def new_session(self, account: Account) -> str:
        """Log the account in again; returns the new session's token."""
        resp = await self.login(account)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["token"])

    async def validate(self, session_id: str) -> httpx.Response:
        return await self.call("POST", "/internal/sessions/validate", json={"sessionId": session_id})


class Clock:
    """A controllable clock for the session service."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


TOKEN_IN_LINK = re.compile(r"/(reset-password|verify-email)\?token=([a-z2-7]{32})\b")


def mails_to(sink: MailSink, address: str, subject: str | None = None) -> list[EmailMessage]:
    """The mails the sink received for `address` (with this subject, when given), oldest first."""
    return [m for m in sink.mails() if m["To"] == address and (subject is None or m["Subject"] == subject)]


async def wait_for_mail(
    sink: MailSink, address: str, subject: str, count: int = 1, within: float = 30.0
) -> list[EmailMessage]:
    """Wait until `count` mails with `subject` reached `address` (bounded: fails after `within` s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(found := mails_to(sink, address, subject)) < count:
        assert loop.time() < deadline, f"no {subject!r} mail for {address} after {within} s"
        await asyncio.sleep(0.05)
    return found


def link_token(message: EmailMessage) -> tuple[str, str]:
    """(page, token) of the one link in a mail."""
    body = message.get_body(("plain",))
    assert body is not None
    found = TOKEN_IN_LINK.findall(body.get_content())
    assert len(found) == 1, body.get_content()
    page, token = found[0]
    return page, token
