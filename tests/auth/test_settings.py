"""AuthSettings: read from AUTH_* variables, durations in seconds or ISO 8601, unsafe values refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.auth.settings import AuthSettings
from shared.settings import SettingsError, from_env


def test_defaults_follow_the_api() -> None:
    s = from_env(AuthSettings, prefix="AUTH_", environ={})
    assert (s.session_lifetime, s.session_renew_within) == (timedelta(days=30), timedelta(days=15))
    assert s.session_absolute_lifetime == timedelta(days=90)
    assert (s.throttle_window, s.throttle_account_limit, s.throttle_client_limit) == (
        timedelta(minutes=15),
        10,
        100,
    )
    assert (s.argon2_memory_kib, s.argon2_time_cost, s.argon2_parallelism) == (19456, 2, 1)
    assert s.database_url == "sqlite:///data/auth.db"


def test_durations_in_seconds_or_iso_8601() -> None:
    env = {"AUTH_SESSION_ABSOLUTE_LIFETIME": "P60D", "AUTH_THROTTLE_WINDOW": "600", "REDIS_URL": "redis://r"}
    s = from_env(AuthSettings, prefix="AUTH_", environ=env)
    assert (s.session_absolute_lifetime, s.throttle_window) == (timedelta(days=60), timedelta(minutes=10))
    assert s.redis_url == "redis://r"


@pytest.mark.parametrize(
    "env",
    [
        {"AUTH_ARGON2_MEMORY_KIB": "8192"},
        {"AUTH_ARGON2_TIME_COST": "1"},
        {"AUTH_SESSION_RENEW_WITHIN": "P31D"},
        {"AUTH_SESSION_ABSOLUTE_LIFETIME": "P7D"},
        {"AUTH_THROTTLE_ACCOUNT_LIMIT": "0"},
        {"AUTH_SESSION_PURGE_INTERVAL": "0"},
        {"AUTH_THROTTLE_WINDOW": "soon"},
        {"APP_ENV": "production"},  # without an INTERNAL_SECRET
    ],
)
def test_unsafe_or_invalid_settings_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        from_env(AuthSettings, prefix="AUTH_", environ=env)
