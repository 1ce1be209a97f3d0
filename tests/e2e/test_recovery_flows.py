"""Account recovery and email verification through the gateway, with the real relay sending the
mail to the test run's SMTP server (aiosmtpd), as a client and its mailbox see them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from devtools.mail_sink import MailSink
from tests.auth.support import link_token, mails_to, wait_for_mail
from tests.support.http import Client, bearer
from tests.support.system import System
from tests.support.users import PASSWORD, login, new_email, signup

pytestmark = pytest.mark.e2e

VERIFY = "Confirm your email address"
RESET = "Reset your password"
CHANGED = "Your password was changed"
EMAIL_CHANGED = "Your email address was changed"


async def test_signup_verification_mail_confirms_the_address(
    http: Client, system: System, mail_sink: MailSink
) -> None:
    user = await signup(http, system.url)
    me = await user.call("GET", "/api/users/me")
    assert me.json()["emailVerified"] is False
    page, token = link_token((await wait_for_mail(mail_sink, user.email, VERIFY))[0])
    assert page == "verify-email"
    confirmed = await http("POST", f"{system.url}/api/auth/email-verification/confirm", json={"token": token})
    assert confirmed.status == 200
    assert confirmed.json()["emailVerified"] is True
    assert (await user.call("GET", "/api/users/me")).json()["emailVerified"] is True
    again = await http("POST", f"{system.url}/api/auth/email-verification/confirm", json={"token": token})
    assert again.status == 400
    assert again.headers["Content-Type"].startswith("application/problem+json")
    assert (await user.call("POST", "/api/users/me/email-verification")).status == 409


async def test_forgotten_password_reset_kills_old_sessions(
    http: Client, system: System, mail_sink: MailSink
) -> None:
    user = await signup(http, system.url)
    second = (await login(http, system.url, user.email)).json()["token"]
    for token in (user.token, second):  # both cached by the gateway now
        assert (await http("GET", f"{system.url}/api/users/me", headers=bearer(token))).status == 200
    asked = await http("POST", f"{system.url}/api/auth/password-reset", json={"email": user.email})
    nobody = await http("POST", f"{system.url}/api/auth/password-reset", json={"email": new_email()})
    assert (asked.status, nobody.status) == (202, 202)
    assert asked.body == nobody.body
    page, token = link_token((await wait_for_mail(mail_sink, user.email, RESET))[0])
    assert page == "reset-password"
    new = "a new and better passphrase"
    body = {"token": token, "newPassword": new}
    assert (await http("POST", f"{system.url}/api/auth/password-reset/confirm", json=body)).status == 204
    for old in (user.token, second):  # dead at the very next request, cache included
        assert (await http("GET", f"{system.url}/api/users/me", headers=bearer(old))).status == 401
    assert (await login(http, system.url, user.email, PASSWORD)).status == 401
    fresh = await login(http, system.url, user.email, new)
    assert fresh.status == 200
    assert fresh.json()["user"]["emailVerified"] is True
    await wait_for_mail(mail_sink, user.email, CHANGED)
    reused = await http("POST", f"{system.url}/api/auth/password-reset/confirm", json=body)
    assert reused.status == 400


async def test_email_change_mails_both_addresses(http: Client, system: System, mail_sink: MailSink) -> None:
    user = await signup(http, system.url)
    old_token = link_token((await wait_for_mail(mail_sink, user.email, VERIFY))[0])[1]
    moved = new_email()
    reply = await user.call("PATCH", "/api/users/me", json={"email": moved, "currentPassword": PASSWORD})
    assert reply.status == 200
    assert reply.json()["emailVerified"] is False
    await wait_for_mail(mail_sink, user.email, EMAIL_CHANGED)
    new_token = link_token((await wait_for_mail(mail_sink, moved, VERIFY))[0])[1]
    stale = await http("POST", f"{system.url}/api/auth/email-verification/confirm", json={"token": old_token})
    assert stale.status == 400
    ok = await http("POST", f"{system.url}/api/auth/email-verification/confirm", json={"token": new_token})
    assert (ok.status, ok.json()["email"], ok.json()["emailVerified"]) == (200, moved, True)


async def test_reset_mail_arrives_after_the_smtp_server_comes_back(
    http: Client, system: System, mail_sink: MailSink
) -> None:
    user = await signup(http, system.url)
    await wait_for_mail(mail_sink, user.email, VERIFY)
    log = system.relay.log_path
    seen = log.stat().st_size if log.exists() else 0
    mail_sink.stop()
    try:
        asked = await http("POST", f"{system.url}/api/auth/password-reset", json={"email": user.email})
        assert asked.status == 202  # the request does not wait for SMTP
        # The relay tries while the server is down: its log says so; the mail waits in the outbox.
        await _until(lambda: b"smtp_unreachable" in log.read_bytes()[seen:])
    finally:
        mail_sink.start()
    (message,) = await wait_for_mail(mail_sink, user.email, RESET)
    _, token = link_token(message)
    body = {"token": token, "newPassword": "after the outage"}
    assert (await http("POST", f"{system.url}/api/auth/password-reset/confirm", json=body)).status == 204
    assert len(mails_to(mail_sink, user.email, RESET)) == 1  # sent once, not once per retry


async def _until(condition: Callable[[], bool], within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
