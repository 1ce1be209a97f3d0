"""Every environment variable the processes read, its default and meaning: `python -m devtools.settings_doc`.

The README's configuration table is exactly this output (a test compares them). A setting added to a
settings class needs its meaning here; the test names any that lacks one.
`--env-example` prints `.env.example` instead (a test checks the committed file is this output).
"""

# ruff: noqa: E501 - the meanings are the README table's cells, one line each
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import timedelta

import msgspec

from shared.settings import CommonSettings, env_name

HEADER = "| variable | process | default | meaning |\n|---|---|---|---|"

MEANINGS: dict[str, str] = {
    "APP_ENV": "`production` refuses to start without a real `INTERNAL_SECRET` and logs JSON",
    "REDIS_URL": "session cache, rate limits, throttling, event stream, view buffer (`make run` starts its own)",
    "INTERNAL_SECRET": (
        "HMAC key of the internal credential; 32+ characters, required in production (development falls back to a fixed,"
        " insecure key and logs a warning; `make run` generates one per run and keeps it in `data/run.env`)"
    ),
    "LOG_LEVEL": "log level",
    "LOG_JSON": "JSON lines (production default) or readable lines (development default)",
    "AUTH_DATABASE_URL": "`sqlite:///path` or `postgresql://user:pass@host/db`",
    "AUTH_DB_POOL_SIZE": "PostgreSQL pool size",
    "AUTH_SESSION_LIFETIME": "a session's sliding expiry",
    "AUTH_SESSION_RENEW_WITHIN": "slide forward when less than this remains",
    "AUTH_SESSION_ABSOLUTE_LIFETIME": "no session lives longer, however active",
    "AUTH_SESSION_PURGE_INTERVAL": "how often expired sessions are deleted",
    "AUTH_THROTTLE_WINDOW": "login-failure counting window",
    "AUTH_THROTTLE_ACCOUNT_LIMIT": "failures per account before every login for it is 429",
    "AUTH_THROTTLE_CLIENT_LIMIT": "failures per client address before its logins are 429",
    "AUTH_THROTTLE_ACCOUNT_IN_FLIGHT": "logins of one account checking a password at the same moment",
    "AUTH_ARGON2_MEMORY_KIB": "argon2id memory (OWASP minimum; lower is refused)",
    "AUTH_ARGON2_TIME_COST": "argon2id iterations (minimum 2)",
    "AUTH_ARGON2_PARALLELISM": "argon2id lanes",
    "AUTH_RELAY_INTERVAL": "seconds between outbox polls when it is empty",
    "AUTH_RELAY_BATCH_SIZE": "outbox rows published per batch",
    "AUTH_OUTBOX_RETENTION": "how long sent outbox rows (events and mails) are kept; the relay deletes older ones hourly",
    "SMTP_URL": (
        "where the relay sends mail: `smtp://[user:password@]host:port` (STARTTLS when the server offers it) or"
        " `smtps://…` (implicit TLS); `make run` starts a local sink and points this at it unless it is set"
    ),
    "MAIL_FROM": "the `From` of every mail",
    "APP_BASE_URL": (
        "the front end's URL: links are `{APP_BASE_URL}/reset-password?token=…` and"
        " `{APP_BASE_URL}/verify-email?token=…`"
    ),
    "AUTH_MAIL_TIMEOUT": "seconds per SMTP connection and command",
    "AUTH_MAIL_MAX_ATTEMPTS": (
        "refusals of one mail by the SMTP server before it is dead-lettered (an unreachable server never counts)"
    ),
    "AUTH_MAIL_RETRY_MAX": "longest wait in seconds between tries while the SMTP server is unreachable",
    "AUTH_MAIL_CLIENT_LIMIT": "reset and verification requests per client address per hour (429 beyond)",
    "AUTH_MAIL_ACCOUNT_LIMIT": (
        "reset (and verification) mails per account per hour; more requests answer 202 and send nothing"
    ),
    "CANVAS_DATABASE_URL": "the canvas service's own database",
    "CANVAS_DB_POOL_SIZE": "PostgreSQL pool size",
    "CANVAS_REDIS_POOL_SIZE": "Redis connections (requests wait for one instead of failing)",
    "CANVAS_AUTH_URL": "the auth service, for the reconciliation sweep",
    "CANVAS_AUTH_TIMEOUT": "seconds per call to the auth service",
    "CANVAS_BODY_MAX_BYTES": "request body limit",
    "CANVAS_RUN_BACKGROUND": "run the consumer, flusher and sweep inside the web process",
    "CANVAS_FLUSH_INTERVAL": "seconds between view-buffer flushes",
    "CANVAS_VIEW_BATCH_RETENTION": "seconds an applied flush batch id is remembered (idempotent re-apply)",
    "CANVAS_READ_CACHE_TTL": "seconds a canvas stays in the Redis read cache (bounds a missed invalidation; `0` turns the cache off)",
    "CANVAS_READ_CACHE_MAX_BYTES": "canvases larger than this (as JSON) are always read from the database",
    "CANVAS_RECONCILE_INTERVAL": "seconds between reconciliation sweeps",
    "CANVAS_RECONCILE_BATCH": "owner ids per existence query to the auth service",
    "CANVAS_RECONCILE_MAX_UNKNOWN_FRACTION": "a sweep that finds more than this share of owners unknown to the auth service (20 or more checked) deletes nothing; 1 turns the guard off",
    "CANVAS_DELETE_BATCH": "canvases deleted per transaction in the cascade",
    "CANVAS_CONSUMER_NAME": "this process's name in the consumer group",
    "CANVAS_CONSUMER_BLOCK_MS": "XREADGROUP block time",
    "CANVAS_CLAIM_IDLE_MS": "a pending event idle this long is reclaimed from a dead consumer",
    "CANVAS_MAX_DELIVERIES": "deliveries before an event goes to the dead-letter stream",
    "GATEWAY_AUTH_URL": "the auth service",
    "GATEWAY_CANVAS_URL": "the canvas service",
    "GATEWAY_ALLOWED_ORIGINS": "origins for CORS and for cookie-authenticated writes (CSRF)",
    "GATEWAY_COOKIE_SECURE": "`Secure` on the session cookie; `make run` turns it off for local HTTP",
    "GATEWAY_BODY_LIMIT": "request body limit (413 beyond)",
    "GATEWAY_CONNECT_TIMEOUT": "upstream connect timeout (seconds)",
    "GATEWAY_READ_TIMEOUT": "upstream read timeout (504 beyond)",
    "GATEWAY_POOL_SIZE": "requests in flight (and keep-alive connections) per upstream",
    "GATEWAY_CIRCUIT_FAILURES": "consecutive failures that mark an upstream down (503)",
    "GATEWAY_CIRCUIT_COOLDOWN": "seconds it stays marked down at most (the `Retry-After`); a successful `/health` probe ends it sooner",
    "GATEWAY_REDIS_TIMEOUT": "Redis budget per call before falling back to the auth service",
    "GATEWAY_REDIS_COOLDOWN": "seconds Redis is bypassed after it failed",
    "GATEWAY_SESSION_MEMORY_TTL": "seconds each gateway process remembers a session it found in Redis (forgotten at once when Redis says its key changed: a revocation); 0 turns it off",
    "GATEWAY_RATE_LIMIT": "requests per client per unit; 0 turns the limit off",
    "GATEWAY_RATE_LIMIT_UNIT": "`second`, `minute`, `hour` or `day`",
    "GATEWAY_TRUSTED_PROXIES": "peers whose `X-Forwarded-For` is believed",
    "GATEWAY_ACCESS_LOG": "one structured `access` log line per request (method, route, status, duration, request id, client)",
    "GATEWAY_SCHEMA_TTL": "seconds the merged OpenAPI document is cached",
    "GATEWAY_METRICS_HOST": "address of the gateway's own `/metrics` listener (compose: `0.0.0.0`, not published)",
    "GATEWAY_METRICS_PORT": "port of that listener; `0` turns it off",
    "GATEWAY_METRICS_ALLOW": "addresses or networks (`10.0.0.0/8`) that may also read `/metrics` on the public port; everyone else gets 404",
    "AUTH_HASH_THREADS": "threads hashing passwords per process; `0`: half the cores, at least 1 (the rest stay free for requests that hash nothing)",
    "AUTH_HASH_NICE": "the hashing threads' nice value (0-19, Linux): under contention, requests that hash nothing are scheduled first, and hashing still gets a share",
    "AUTH_HASH_IDLE": "hashing threads under Linux `SCHED_IDLE` instead: a request takes the core from a hash at once, but on a machine kept busy by anything else hashing (logins, signups) all but stops",
    "AUTH_HASH_QUEUE": "password hashes running or waiting per process; more are refused at once with 503 + `Retry-After`",
    "AUTH_CLIENT_PASSWORD_IN_FLIGHT": "signups, logins and password checks one client may have in flight; more are 429 + `Retry-After`",
    "AUTH_SIGNUP_CLIENT_LIMIT": "signups per client per `AUTH_SIGNUP_WINDOW`; more are 429",
    "AUTH_SIGNUP_WINDOW": "the signup counting window",
    "GATEWAY_POOL_WAIT": "seconds a request may wait for one of those places, then 503 + `Retry-After` (not the connect timeout)",
    "GATEWAY_PASSWORD_CLIENT_IN_FLIGHT": "password requests one client may have in flight per gateway process; more are 429 + `Retry-After` at once",
    "GATEWAY_PASSWORD_POOL_SIZE": "places for the routes that hash a password, a pool of their own; all taken → 503 at once",
}


def settings_classes() -> list[tuple[str, type[CommonSettings], str]]:
    from gateway.settings import GatewaySettings
    from services.auth.settings import AuthSettings
    from services.canvas.settings import CanvasSettings

    return [
        ("all", CommonSettings, ""),
        ("auth", AuthSettings, "AUTH_"),
        ("canvas", CanvasSettings, "CANVAS_"),
        ("gateway", GatewaySettings, "GATEWAY_"),
    ]


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 86_400 == 0:
        return f"P{seconds // 86_400}D"
    for size, unit in ((3600, "H"), (60, "M"), (1, "S")):
        if seconds % size == 0:
            return f"PT{seconds // size}{unit}"
    return f"PT{value.total_seconds()}S"


def variables() -> Iterator[tuple[str, str, str]]:
    """(process, VARIABLE, default) for every setting; shared ones once, under `all`."""
    shared = CommonSettings.__shared_fields__
    for process, cls, prefix in settings_classes():
        for field in msgspec.structs.fields(cls):
            if field.name in shared and process != "all":
                continue
            if field.default is not msgspec.NODEFAULT:
                value = field.default
            elif field.name == "consumer_name":
                value = "<hostname>-<pid>"
            else:
                value = field.default_factory()
            if isinstance(value, timedelta):
                default = _duration(value)
            elif isinstance(value, str):
                default = value
            else:
                default = msgspec.json.encode(value).decode()
            yield process, env_name(cls, prefix, field.name), default


def _shown_default(name: str, default: str) -> str:
    if name == "LOG_JSON":
        return "*(by `APP_ENV`)*"
    return f"`{default}`" if default else "*(none)*"


def table() -> str:
    rows = [HEADER]
    for process, name, default in variables():
        rows.append(f"| `{name}` | {process} | {_shown_default(name, default)} | {MEANINGS.get(name, '?')} |")
    return "\n".join(rows)


def env_example() -> str:
    """`.env.example`: every variable, commented out at its default, grouped by the process reading it."""
    lines = [
        "# Canvas-Verse settings: every environment variable the processes read, at its default.",
        "# Generated by `python -m devtools.settings_doc --env-example`; do not edit by hand.",
        "# Copy to .env and uncomment what you change (the real environment wins over .env).",
        "# Above each variable: what it does (the README's Configuration table says the same).",
    ]
    current = None
    for process, name, default in variables():
        if process != current:
            current = process
            lines += ["", f"# --- {'every process' if process == 'all' else process} ---"]
        lines += ["", f"# {MEANINGS.get(name, '?')}"]
        if default == "null" or default.startswith("<"):  # no literal default: say what unset means
            lines.append("# unset by default" + ("" if default == "null" else f": {default}"))
            lines.append(f"# {name}=")
        else:
            lines.append(f"# {name}={default}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.settings_doc",
        description="Print every environment variable the processes read (the README's table, in Markdown).",
    )
    parser.add_argument("--env-example", action="store_true", help="print .env.example instead of the table")
    args = parser.parse_args(argv)
    sys.stdout.write(env_example() if args.env_example else table() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
