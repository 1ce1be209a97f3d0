"""The auth service's settings: environment variables with the AUTH_ prefix (plus the shared ones)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from shared.settings import CommonSettings, SettingsError, load_settings

# OWASP's minimum for argon2id: 19 MiB of memory, 2 iterations, 1 degree of parallelism.
ARGON2_MIN_MEMORY_KIB = 19_456
ARGON2_MIN_TIME_COST = 2
ARGON2_MIN_PARALLELISM = 1


class AuthSettings(CommonSettings, kw_only=True):
    """Durations accept seconds (`900`) or ISO 8601 (`PT15M`, `P30D`)."""

    # The mail settings are read without the AUTH_ prefix (SMTP_URL, MAIL_FROM, APP_BASE_URL).
    __shared_fields__ = CommonSettings.__shared_fields__ | {"smtp_url", "mail_from", "app_base_url"}

    database_url: str = "sqlite:///data/auth.db"
    db_pool_size: int = 10

    session_lifetime: timedelta = timedelta(days=30)
    session_renew_within: timedelta = timedelta(days=15)
    session_absolute_lifetime: timedelta = timedelta(days=90)
    session_purge_interval: timedelta = timedelta(hours=1)

    throttle_window: timedelta = timedelta(minutes=15)
    throttle_account_limit: int = 10
    throttle_client_limit: int = 100
    # Login attempts on one account that may be checking a password at the same moment; with the
    # account limit this bounds the hash checks an attacker gets per window, however concurrent.
    throttle_account_in_flight: int = 10

    # Password work (issue 14): hashes running or waiting per process before more are refused with
    # 503; signups, logins and password checks one client may have in flight (more: 429); signups
    # per client per window (more: 429).
    hash_threads: int = 0  # threads hashing passwords per process; 0: half the cores (at least 1)
    hash_queue: int = 32
    hash_nice: int = 10  # the hashing threads' nice value (0-19, Linux): lower priority than requests
    hash_idle: bool = False  # SCHED_IDLE instead (Linux): preempted by any request, starved on a busy machine
    client_password_in_flight: int = 8
    signup_client_limit: int = 1000
    signup_window: timedelta = timedelta(hours=1)

    argon2_memory_kib: int = ARGON2_MIN_MEMORY_KIB
    argon2_time_cost: int = ARGON2_MIN_TIME_COST
    argon2_parallelism: int = ARGON2_MIN_PARALLELISM

    relay_interval: float = 0.5  # seconds between polls of the outbox when it is empty
    relay_batch_size: int = 100
    outbox_retention: timedelta = timedelta(days=7)  # sent rows older than this are deleted by the relay

    # Mail (sent by the relay from the mail outbox). smtp://[user:password@]host:port (STARTTLS when
    # the server offers it) or smtps://... (implicit TLS).
    smtp_url: str = "smtp://127.0.0.1:1025"
    mail_from: str = "Canvas-Verse <no-reply@canvas-verse.local>"
    app_base_url: str = "http://127.0.0.1:3000"  # the front end: links are {APP_BASE_URL}/reset-password?...
    mail_timeout: float = 10.0  # seconds per SMTP connection and command
    mail_max_attempts: int = 5  # SMTP servers' refusals of one mail before it is dead-lettered
    mail_retry_max: float = 60.0  # longest wait (seconds) between tries while the SMTP server is down
    mail_client_limit: int = 20  # reset / verification requests per client address per hour (then 429)
    mail_account_limit: int = 3  # reset / verification mails per account per hour (more send nothing)

    def check(self) -> None:
        super().check()
        if (
            self.argon2_memory_kib < ARGON2_MIN_MEMORY_KIB
            or self.argon2_time_cost < ARGON2_MIN_TIME_COST
            or self.argon2_parallelism < ARGON2_MIN_PARALLELISM
        ):
            raise SettingsError(
                "AUTH_ARGON2_MEMORY_KIB, AUTH_ARGON2_TIME_COST, AUTH_ARGON2_PARALLELISM: expected at least"
                " the OWASP minimum (19456, 2, 1)"
            )
        if not timedelta(0) < self.session_renew_within < self.session_lifetime:
            raise SettingsError("AUTH_SESSION_RENEW_WITHIN must be positive and shorter than the lifetime")
        if self.session_absolute_lifetime < self.session_lifetime:
            raise SettingsError("AUTH_SESSION_ABSOLUTE_LIFETIME must be at least AUTH_SESSION_LIFETIME")
        smtp = urlsplit(self.smtp_url)
        if smtp.scheme not in ("smtp", "smtps") or not smtp.hostname:
            raise SettingsError("SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        if urlsplit(self.app_base_url).scheme not in ("http", "https"):
            raise SettingsError("APP_BASE_URL must be an http:// or https:// URL")
        if min(self.mail_max_attempts, self.mail_client_limit, self.mail_account_limit) < 1 or (
            min(self.mail_timeout, self.mail_retry_max) <= 0
        ):
            raise SettingsError("AUTH_MAIL_* limits and the timeout must be positive")
        if (
            min(
                self.throttle_account_limit,
                self.throttle_client_limit,
                self.throttle_account_in_flight,
                self.hash_queue,
                self.client_password_in_flight,
                self.signup_client_limit,
            )
            < 1
            or self.signup_window <= timedelta(0)
            or self.hash_threads < 0
            or not 0 <= self.hash_nice <= 19
        ):
            raise SettingsError(
                "AUTH_THROTTLE_ACCOUNT_LIMIT, AUTH_THROTTLE_CLIENT_LIMIT, AUTH_THROTTLE_ACCOUNT_IN_FLIGHT,"
                " AUTH_HASH_QUEUE, AUTH_CLIENT_PASSWORD_IN_FLIGHT, AUTH_SIGNUP_CLIENT_LIMIT:"
                " expected at least 1; AUTH_SIGNUP_WINDOW: a positive duration; AUTH_HASH_NICE: 0 to 19"
            )
        if (
            min(self.throttle_window, self.session_purge_interval, self.outbox_retention) <= timedelta(0)
            or self.relay_interval <= 0
            or self.relay_batch_size < 1
        ):
            raise SettingsError(
                "AUTH_THROTTLE_WINDOW, AUTH_SESSION_PURGE_INTERVAL, AUTH_OUTBOX_RETENTION,"
                " AUTH_RELAY_INTERVAL and AUTH_RELAY_BATCH_SIZE must be positive"
            )


def from_environment() -> AuthSettings:
    """The settings from the environment (exit 2 when invalid): entry points call this once."""
    return load_settings(AuthSettings, prefix="AUTH_")
