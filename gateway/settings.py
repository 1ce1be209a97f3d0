"""The gateway's settings: GATEWAY_* variables plus the shared ones (REDIS_URL, INTERNAL_SECRET, ...)."""

from __future__ import annotations

from typing import Literal

from gateway.edge import Networks
from shared.settings import CommonSettings, SettingsError, load_settings

MIB = 1024 * 1024


class GatewaySettings(CommonSettings, kw_only=True):
    auth_url: str = "http://127.0.0.1:8001"
    canvas_url: str = "http://127.0.0.1:8002"
    # Origins allowed for CORS and for cookie-authenticated state changes (CSRF), e.g.
    # GATEWAY_ALLOWED_ORIGINS='["https://app.example.com"]'.
    allowed_origins: list[str] = []
    cookie_secure: bool = True  # false only for local HTTP
    body_limit: int = 2 * MIB
    # Upstream HTTP clients
    connect_timeout: float = 2.0
    read_timeout: float = 15.0  # covers password hashing under load
    pool_size: int = 128  # requests in flight (and keep-alive connections) per upstream
    pool_wait: float = 2.0  # seconds a request may wait for one of those places; then 503 + Retry-After
    # The routes that hash a password (signup, login, password and email changes, account deletion)
    # reach the auth service through a pool of their own, so hashing never holds up session checks
    # and the other routes; when all its places are taken, 503 + Retry-After at once, never a wait.
    password_pool_size: int = 32
    # Password requests one client may have in flight through this gateway process; more are 429 +
    # Retry-After at once, before the body is read or the auth service is asked.
    password_client_in_flight: int = 4
    circuit_failures: int = 5  # consecutive failures that mark an upstream down
    circuit_cooldown: float = 5.0  # seconds an upstream stays marked down at most (a probe ends it sooner)
    # Redis (session cache, rate limit): a slow Redis must not stall requests
    redis_timeout: float = 0.15
    redis_cooldown: float = 1.0  # seconds to bypass Redis after it failed
    # Seconds each process keeps a session it found in the Redis cache; Redis tells it at once when
    # the session's key changes (a revocation), so this bounds only how often it asks again. 0: off.
    session_memory_ttl: float = 5.0
    # General per-client rate limit; 0 turns it off
    rate_limit: int = 10_000
    rate_limit_unit: Literal["second", "minute", "hour", "day"] = "minute"
    # Peers whose X-Forwarded-For is believed (the client is its last untrusted address)
    trusted_proxies: list[str] = []
    schema_ttl: float = 300.0  # seconds the merged OpenAPI document is cached
    # /metrics: served on its own listener (not published; 0 turns it off) and, on the public port,
    # only to peers in this allow-list of addresses or networks (default: nobody)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    metrics_allow: list[str] = []
    access_log: bool = True  # one `access` log line per request

    def check(self) -> None:
        super().check()
        for origin in self.allowed_origins:
            if origin == "*" or origin.endswith("/") or "://" not in origin:
                raise SettingsError(f"GATEWAY_ALLOWED_ORIGINS: {origin!r} is not an origin like https://host")
        try:
            Networks(self.metrics_allow)
        except ValueError as exc:
            raise SettingsError(f"GATEWAY_METRICS_ALLOW: {exc}") from None
        if min(self.body_limit, self.pool_size, self.password_pool_size, self.circuit_failures) <= 0:
            raise SettingsError(
                "GATEWAY_BODY_LIMIT, _POOL_SIZE, _PASSWORD_POOL_SIZE and _CIRCUIT_FAILURES must be > 0"
            )
        if self.password_client_in_flight < 1:
            raise SettingsError("GATEWAY_PASSWORD_CLIENT_IN_FLIGHT must be at least 1")
        if self.pool_wait < 0:
            raise SettingsError("GATEWAY_POOL_WAIT must be >= 0")
        if not 0 <= self.session_memory_ttl <= 60:
            raise SettingsError("GATEWAY_SESSION_MEMORY_TTL must be between 0 and 60 seconds")


def from_environment() -> GatewaySettings:
    """The settings from the environment (exit 2 when invalid): entry points call this once."""
    return load_settings(GatewaySettings, prefix="GATEWAY_")
