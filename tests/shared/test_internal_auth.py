import time

import pytest

from shared import internal_auth as ia

SECRET = b"s" * 32


def test_round_trip_carries_identity() -> None:
    token = ia.sign(SECRET, audience="auth", user_id="u1", session_id="s1", request_id="r1")
    cred = ia.verify(SECRET, token, audiences={"auth"})
    assert (cred.uid, cred.sid, cred.rid) == ("u1", "s1", "r1")


@pytest.mark.parametrize("value", [None, "", "garbage", "v1.a.b", "v2.x.y", "v1..", "v1.!!!.sig"])
def test_missing_or_malformed_is_rejected(value: str | None) -> None:
    with pytest.raises(ia.InvalidCredential):
        ia.verify(SECRET, value, audiences={"auth"})


def test_tampered_payload_is_rejected() -> None:
    token = ia.sign(SECRET, audience="auth", user_id="u1")
    other = ia.sign(SECRET, audience="auth", user_id="admin")
    forged = ".".join([*other.split(".")[:2], token.split(".")[2]])
    with pytest.raises(ia.InvalidCredential, match="signature"):
        ia.verify(SECRET, forged, audiences={"auth"})


def test_other_secret_is_rejected() -> None:
    with pytest.raises(ia.InvalidCredential):
        ia.verify(SECRET, ia.sign(b"x" * 32, audience="auth", user_id="u1"), audiences={"auth"})


def test_expired_and_future_credentials_are_rejected() -> None:
    now = time.time()
    with pytest.raises(ia.InvalidCredential, match="expired"):
        ia.verify(
            SECRET,
            ia.sign(SECRET, audience="auth", now=now - ia.DEFAULT_MAX_AGE - 1),
            audiences={"auth"},
            now=now,
        )
    with pytest.raises(ia.InvalidCredential, match="expired"):
        ia.verify(SECRET, ia.sign(SECRET, audience="auth", now=now + 60), audiences={"auth"}, now=now)
    assert ia.verify(
        SECRET, ia.sign(SECRET, audience="auth", now=now - 1), audiences={"auth"}, now=now
    ).iat == pytest.approx(now - 1)


def test_a_credential_for_another_service_is_refused() -> None:
    token = ia.sign(SECRET, audience="canvas", user_id="u1")
    assert ia.verify(SECRET, token, audiences={"canvas"}).aud == "canvas"
    with pytest.raises(ia.InvalidCredential, match="another service"):
        ia.verify(SECRET, token, audiences={"auth"})
