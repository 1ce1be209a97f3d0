"""Test environment: the project's own Redis, fresh databases (SQLite, or PostgreSQL with TEST_DB=postgres),
and a real SMTP server (aiosmtpd, devtools.mail_sink) that every process sends its mail to. All of it
lives in one temporary folder, removed at the end unless a test failed (then its path is printed: the
stacks' process logs are under `<name>/logs`).

The environment is set up in `pytest_configure`; the services read it only when a test builds
settings from it (`from_environment()`). Tests that use the tables without an app (fixtures inserting
rows, direct checks) find them bound to this run's databases by `tables_bound`; an app's lifespan
binds them to its own engine while it runs, and restores this binding after.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from devtools.mail_sink import MailSink
from devtools.migrate import APPS, migrate
from devtools.processes import ROOT
from devtools.redis_server import RedisServer
from tests.support import databases

_state: dict[str, object] = {}


def _database_urls(data_dir: Path) -> dict[str, str]:
    urls, created = asyncio.run(
        databases.fresh_databases(data_dir, sqlite_prefix="", postgres_prefix="cv_test")
    )
    _state["pg_databases"] = created
    return {f"{app.upper()}_DATABASE_URL": url for app, url in urls.items()}


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    run_id = uuid.uuid4().hex[:12]
    data_dir = Path(tempfile.mkdtemp(prefix=f"cv-test-{run_id}-"))
    _state["data_dir"] = data_dir
    redis_server = RedisServer(data_dir / "redis").start()
    _state["redis"] = redis_server
    # A real SMTP server; it refuses mailboxes named `refused-...` (550), for the dead-letter tests.
    mail_sink = MailSink(data_dir / "mail", refuse=lambda address: address.startswith("refused-")).start()
    _state["mail_sink"] = mail_sink
    env = {
        "APP_ENV": "development",
        "REDIS_URL": redis_server.url,
        "INTERNAL_SECRET": secrets.token_urlsafe(32),
        "LOG_LEVEL": "WARNING",
        "DATA_DIR": str(data_dir),  # never a developer's data/run.env
        "SMTP_URL": mail_sink.url,
        "APP_BASE_URL": "https://app.example.test",
        "AUTH_MAIL_RETRY_MAX": "1",  # a relay retries a stopped SMTP server every second at most
        **_database_urls(data_dir),
    }
    os.environ.update(env)
    present = [app for app, conf in APPS.items() if (ROOT / (conf.replace(".", "/") + ".py")).exists()]
    migrate(present)


def pytest_unconfigure(config: pytest.Config) -> None:
    sink = _state.pop("mail_sink", None)
    if isinstance(sink, MailSink):
        sink.stop()
    server = _state.pop("redis", None)
    if isinstance(server, RedisServer):
        server.stop()
    created = _state.pop("pg_databases", None)
    if isinstance(created, list):
        asyncio.run(databases.drop(created))
    data_dir = _state.pop("data_dir", None)
    if isinstance(data_dir, Path):
        if _state.pop("failed", False):  # the processes' logs are what a failure is explained by
            print(f"\nA test failed: this run's data and process logs are kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _state["failed"] = session.testsfailed > 0


@pytest.fixture(scope="session", autouse=True)
async def tables_bound() -> AsyncIterator[None]:
    from services.auth import db as auth_db
    from services.auth.settings import from_environment as auth_settings
    from services.canvas import db as canvas_db
    from services.canvas.settings import from_environment as canvas_settings
    from shared.db import engine_lifespan, make_engine

    auth = make_engine(auth_settings().database_url)
    canvas = make_engine(canvas_settings().database_url)
    with auth_db.bound(auth), canvas_db.bound(canvas):
        async with engine_lifespan(auth, pool_size=4), engine_lifespan(canvas, pool_size=4):
            yield


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    server = _state["redis"]
    assert isinstance(server, RedisServer)
    return server


@pytest.fixture(scope="session")
def mail_sink() -> MailSink:
    """The SMTP server every process of the test run sends to (stop/start it to simulate an outage)."""
    sink = _state["mail_sink"]
    assert isinstance(sink, MailSink)
    return sink


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _state["data_dir"]
    assert isinstance(path, Path)
    return path


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def unique_email() -> str:
    return f"user-{secrets.token_hex(6)}@example.com"
