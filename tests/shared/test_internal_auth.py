import time

import pytest

from shared import internal_auth as ia

SECRET = b"s" * 32


def test_round_trip_carries_identity() -> None:
    token = ia.sign(SECRET, user_id="u1", session_id="s1", request_id="r1")
    cred = ia.verify(SECRET, token)
    assert (cred.uid, cred.sid, cred.rid) == ("u1", "s1", "r1")


@pytest.mark.parametrize("value", [None, "", "garbage", "v1.a.b", "v2.x.y", "v1..", "v1.!!!.sig"])
def test_missing_or_malformed_is_rejected(value: str | None) -> None:
    with pytest.raises(ia.InvalidCredential):
        ia.verify(SECRET, value)


def test_tampered_payload_is_rejected() -> None:
    token = ia.sign(SECRET, user_id="u1")
    other = ia.sign(SECRET, user_id="admin")
    forged = ".".join([*other.split(".")[:2], token.split(".")[2]])
    with pytest.raises(ia.InvalidCredential, match="signature"):
        ia.verify(SECRET, forged)


def test_other_secret_is_rejected() -> None:
    with pytest.raises(ia.InvalidCredential):
        ia.verify(SECRET, ia.sign(b"x" * 32, user_id="u1"))


def test_expired_and_future_credentials_are_rejected() -> None:
    now = time.time()
    with pytest.raises(ia.InvalidCredential, match="expired"):
        ia.verify(SECRET, ia.sign(SECRET, now=now - ia.DEFAULT_MAX_AGE - 1), now=now)
    with pytest.raises(ia.InvalidCredential, match="expired"):
        ia.verify(SECRET, ia.sign(SECRET, now=now + 60), now=now)
    assert ia.verify(SECRET, ia.sign(SECRET, now=now - 1), now=now).iat == pytest.approx(now - 1)
