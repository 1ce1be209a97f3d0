"""Password reset and email verification in the auth service, with mail sent by the real sender
(services.auth.mailer) to the real SMTP server of the test run (aiosmtpd)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from devtools.mail_sink import MailSink
from services.auth import db, deadletters, mail_tokens
from services.auth.mailer import DEAD_LETTER_STREAM, Mailer
from services.auth.tables import MailOutbox, MailToken, User
from shared.dead_letters import ERROR, dead_letters
from shared.timeutil import utcnow
from shared.tokens import session_id_of
from tests.auth.support import Account, Api, Clock, auth_settings, link_token, mails_to, new_ip, wait_for_mail

VERIFY = "Confirm your email address"
RESET = "Reset your password"
CHANGED = "Your password was changed"
EMAIL_CHANGED = "Your email address was changed"
BASE = "https://app.example.test"


@pytest.fixture
async def mailer(redis: aioredis.Redis) -> Mailer:
    return Mailer(auth_settings(), redis)


async def drain(mailer: Mailer) -> None:
    """Send every mail that is due (other tests' mails included), batch after batch."""
    while await mailer.has_due():
        await mailer.send_due()


async def deliver(mailer: Mailer, sink: MailSink, address: str, subject: str, count: int = 1) -> str:
    """Send what is due and return the token of the newest matching mail."""
    await drain(mailer)
    found = await wait_for_mail(sink, address, subject, count)
    return link_token(found[-1])[1]


async def test_signup_mails_a_link_that_verifies_the_address_once(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    assert account.user["emailVerified"] is False
    await drain(mailer)
    (message,) = await wait_for_mail(mail_sink, account.email, VERIFY)
    page, token = link_token(message)
    assert page == "verify-email"
    assert f"{BASE}/verify-email?token={token}" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # Only the token's SHA-256 is stored; the outbox row holds no token either.
    rows = await MailToken.select().where(MailToken.email == account.email).run()
    assert [r["token_hash"] for r in rows] == [mail_tokens.hash_of(token)]
    assert all(token not in str(r) for r in await MailOutbox.select().run())

    resp = await api.call("POST", "/api/auth/email-verification/confirm", json={"token": token})
    assert resp.status_code == 200
    assert resp.json()["emailVerified"] is True
    assert resp.json()["id"] == account.user["id"]
    me = await api.call("GET", "/api/users/me", token=account.token, session=account)
    assert me.json()["emailVerified"] is True
    again = await api.call("POST", "/api/auth/email-verification/confirm", json={"token": token})
    assert again.status_code == 400
    # Verified: asking again is 409.
    resend = await api.call("POST", "/api/users/me/email-verification", session=account)
    assert resend.status_code == 409


async def test_resend_is_capped_per_account_and_per_client(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    for _ in range(3):  # the signup's mail plus two more make three this hour
        assert (
            await api.call("POST", "/api/users/me/email-verification", session=account)
        ).status_code == 202
    count = await MailToken.count().where(MailToken.email == account.email).run()
    assert count == 3  # the third request sent nothing: 202 all the same
    await drain(mailer)
    await wait_for_mail(mail_sink, account.email, VERIFY, count=3)
    # The client's own limit: 20 requests an hour, then 429 with Retry-After.
    for _ in range(17):
        assert (
            await api.call("POST", "/api/users/me/email-verification", session=account)
        ).status_code == 202
    refused = await api.call("POST", "/api/users/me/email-verification", session=account)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert len(mails_to(mail_sink, account.email, VERIFY)) == 3


async def test_reset_answers_and_works_the_same_with_or_without_an_account(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    missing = f"nobody-{secrets.token_hex(6)}@example.com"
    answers = [
        await api.call("POST", "/api/auth/password-reset", json={"email": email})
        for email in (account.email, missing)
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].content == answers[1].content
    assert {k: v for k, v in answers[0].headers.items() if k != "content-length"}.keys() == {
        k for k in answers[1].headers if k != "content-length"
    }
    # The same database work: one token row and one mail request for each address.
    for email in (account.email, missing):
        assert (
            await MailToken.count().where((MailToken.email == email) & (MailToken.purpose == "reset")).run()
            == 1
        )
        assert await MailOutbox.count().where(MailOutbox.recipient == email).run() >= 1
    await deliver(mailer, mail_sink, account.email, RESET)
    assert mails_to(mail_sink, missing) == []  # no account, no mail
    row = await MailOutbox.select().where(MailOutbox.recipient == missing).first().run()
    assert row is not None
    assert row["sent_at"] is not None
    assert row["last_error"] == "no account"


async def test_reset_confirm_changes_the_password_and_revokes_every_session(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink, redis: aioredis.Redis
) -> None:
    other = await api.new_session(account)
    await redis.set(f"session:{account.sid}", b"cached")  # as the gateway's cache would hold it
    assert (
        await api.call("POST", "/api/auth/password-reset", json={"email": account.email})
    ).status_code == 202
    token = await deliver(mailer, mail_sink, account.email, RESET)

    short = await api.call(
        "POST", "/api/auth/password-reset/confirm", json={"token": token, "newPassword": "short"}
    )
    assert short.status_code == 422
    assert "newPassword" in short.json()["detail"]
    new = "a brand new passphrase"
    done = await api.call(
        "POST", "/api/auth/password-reset/confirm", json={"token": token, "newPassword": new}
    )
    assert done.status_code == 204
    for sid in (account.sid, session_id_of(other)):
        assert (await api.validate(sid)).status_code == 404
    assert await redis.exists(f"session:{account.sid}") == 0
    assert (await api.login(account)).status_code == 401
    login = await api.call("POST", "/api/auth/login", json={"email": account.email, "password": new})
    assert login.status_code == 200
    assert login.json()["user"]["emailVerified"] is True  # the reset proved the address
    await drain(mailer)
    await wait_for_mail(mail_sink, account.email, CHANGED)
    reused = await api.call(
        "POST", "/api/auth/password-reset/confirm", json={"token": token, "newPassword": new + "!"}
    )
    assert reused.status_code == 400


async def test_every_bad_token_is_one_400(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    reset = "/api/auth/password-reset/confirm"

    async def confirm(token: str) -> tuple[int, str]:
        resp = await api.call("POST", reset, json={"token": token, "newPassword": "whatever it is"})
        return resp.status_code, resp.json()["detail"] if resp.content else ""

    await api.call("POST", "/api/auth/password-reset", json={"email": account.email})
    older = await deliver(mailer, mail_sink, account.email, RESET)
    await api.call("POST", "/api/auth/password-reset", json={"email": account.email})
    newer = await deliver(mailer, mail_sink, account.email, RESET, count=2)
    assert older != newer
    expired_id = await mail_tokens.issue(
        "reset",
        user_id=uuid.UUID(account.user["id"]),
        email=account.email,
        now=utcnow(),
        secret=auth_settings().secret,
    )
    await (
        MailToken.update({MailToken.expires_at: utcnow() - timedelta(seconds=1)})
        .where(MailToken.id == expired_id)
        .run()
    )
    expired = mail_tokens.token_for(expired_id, auth_settings().secret)
    verify = link_token((await wait_for_mail(mail_sink, account.email, VERIFY))[0])[1]
    answers = {
        "unknown": await confirm(mail_tokens.token_for(uuid.uuid4(), auth_settings().secret)),
        "malformed": await confirm("not a token at all"),
        "superseded": await confirm(older),
        "expired": await confirm(expired),
        "other purpose": await confirm(verify),
    }
    assert {status for status, _ in answers.values()} == {400}
    assert len({detail for _, detail in answers.values()}) == 1
    # The newest one still works, once.
    assert (await confirm(newer))[0] == 204
    assert await confirm(newer) == answers["unknown"]
    for token in ("", "x" * 32, older):
        resp = await api.call("POST", "/api/auth/email-verification/confirm", json={"token": token})
        assert resp.status_code == 400


async def test_email_change_verifies_the_new_address_and_tells_the_old_one(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    await drain(mailer)
    old_link = link_token((await wait_for_mail(mail_sink, account.email, VERIFY))[0])[1]
    new_email = f"moved-{secrets.token_hex(6)}@example.com"
    body = {"email": new_email, "currentPassword": account.password}
    changed = await api.call("PATCH", "/api/users/me", json=body, session=account)
    assert changed.status_code == 200
    assert changed.json()["emailVerified"] is False
    await drain(mailer)
    await wait_for_mail(mail_sink, account.email, EMAIL_CHANGED)
    notice = mails_to(mail_sink, account.email, EMAIL_CHANGED)[0].get_body(("plain",))
    assert notice is not None
    assert "token=" not in notice.get_content()
    # The link sent to the old address no longer verifies anything.
    stale = await api.call("POST", "/api/auth/email-verification/confirm", json={"token": old_link})
    assert stale.status_code == 400
    fresh = link_token((await wait_for_mail(mail_sink, new_email, VERIFY))[0])[1]
    resp = await api.call("POST", "/api/auth/email-verification/confirm", json={"token": fresh})
    assert resp.status_code == 200
    assert (resp.json()["email"], resp.json()["emailVerified"]) == (new_email, True)


async def test_a_password_change_sends_a_notice(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    body = {"currentPassword": account.password, "newPassword": "another good passphrase"}
    assert (await api.call("POST", "/api/users/me/password", json=body, session=account)).status_code == 204
    await drain(mailer)
    (notice,) = await wait_for_mail(mail_sink, account.email, CHANGED)
    assert f"{BASE}/reset-password" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_a_rolled_back_change_sends_no_mail(api: Api, mailer: Mailer, mail_sink: MailSink) -> None:
    """The mail request is part of the change's transaction: a rollback takes the mail with it."""
    from services.auth import recovery
    from services.auth.app import create_app  # noqa: F401 - the tables' engine is configured

    email = f"rollback-{secrets.token_hex(6)}@example.com"
    user = await api.signup(email)
    await drain(mailer)
    await wait_for_mail(mail_sink, email, VERIFY)
    row = await User.select().where(User.email == email).first().run()
    assert row is not None

    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction():
            await recovery.send_verification(row, utcnow(), auth_settings())
            raise Abort
    assert await MailToken.count().where(MailToken.email == email).run() == 1
    assert await MailOutbox.count().where(MailOutbox.recipient == email).run() == 1
    await drain(mailer)
    assert len(mails_to(mail_sink, email, VERIFY)) == 1
    assert user.user["emailVerified"] is False


async def test_reset_requests_from_one_client_are_limited(api: Api) -> None:
    api.ip = new_ip()
    for i in range(20):
        email = f"limit-{i}-{secrets.token_hex(4)}@example.com"
        assert (await api.call("POST", "/api/auth/password-reset", json={"email": email})).status_code == 202
    refused = await api.call("POST", "/api/auth/password-reset", json={"email": "x@example.com"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert refused.headers["content-type"].startswith("application/problem+json")


async def test_a_mail_the_server_keeps_refusing_is_dead_lettered_then_replayed(
    api: Api, redis: aioredis.Redis, mail_sink: MailSink
) -> None:
    email = f"refused-{secrets.token_hex(6)}@example.com"
    await api.signup(email)  # its verification mail is refused by the SMTP server (550)
    clock = Clock()
    clock.now = utcnow()
    mailer = Mailer(auth_settings(mail_max_attempts=2), redis, clock=clock)

    async def row() -> dict[str, Any]:
        found = await MailOutbox.select().where(MailOutbox.recipient == email).first().run()
        assert found is not None
        return found

    await drain(mailer)
    first = await row()
    assert (first["attempts"], first["sent_at"], first["dead_at"]) == (1, None, None)
    assert "550" in first["last_error"]
    assert first["next_attempt_at"] > clock.now  # waits before the next try
    await drain(mailer)
    assert (await row())["attempts"] == 1  # not due yet: not tried again
    clock.advance(seconds=31)
    await drain(mailer)
    dead = await row()
    assert dead["attempts"] == 2
    assert dead["dead_at"] is not None
    assert dead["sent_at"] is None
    letters = [
        (entry_id, fields)
        for entry_id, fields in await dead_letters(redis, DEAD_LETTER_STREAM)
        if fields[b"mail"] == str(dead["id"]).encode()
    ]
    assert len(letters) == 1
    entry_id, fields = letters[0]
    assert fields[b"kind"] == b"verify-email"
    assert b"550" in fields[ERROR]
    assert email.encode() not in b"".join(fields.values())  # no address, text or link in Redis

    # The operator's replay (the same tool as for event dead letters) puts it back in line.
    replayed = await deadletters.run("replay", [entry_id], auth_settings().redis_url)
    assert [r["id"] for r in replayed] == [entry_id]
    assert await mailer.requeue_replayed() >= 1
    again = await row()
    assert (again["attempts"], again["dead_at"], again["sent_at"]) == (0, None, None)
    assert mails_to(mail_sink, email) == []


async def test_two_confirms_of_one_reset_token_at_once_one_wins(
    api: Api, account: Account, mailer: Mailer, mail_sink: MailSink
) -> None:
    assert (
        await api.call("POST", "/api/auth/password-reset", json={"email": account.email})
    ).status_code == 202
    token = await deliver(mailer, mail_sink, account.email, RESET)
    passwords = [f"racing passphrase {i}" for i in range(2)]
    replies = await asyncio.gather(
        *(
            api.call("POST", "/api/auth/password-reset/confirm", json={"token": token, "newPassword": p})
            for p in passwords
        )
    )
    assert sorted(r.status_code for r in replies) == [204, 400]
    winner = passwords[[r.status_code for r in replies].index(204)]
    login = await api.call("POST", "/api/auth/login", json={"email": account.email, "password": winner})
    assert login.status_code == 200
