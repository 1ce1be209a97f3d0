"""Settings are injected, not imported: two apps built with different settings in one process each
use their own database and their own password hasher."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.migrate import migrate
from services.auth.app import create_app
from services.auth.settings import AuthSettings
from services.auth.tables import User
from tests.auth.support import Api, auth_settings, running

pytestmark = pytest.mark.sqlite_only


def _settings(tmp_path: Path, name: str, memory_kib: int) -> AuthSettings:
    url = f"sqlite:///{tmp_path / name}.db"
    migrate(["auth"], env={"AUTH_DATABASE_URL": url})
    return auth_settings(database_url=url, argon2_memory_kib=memory_kib)


async def test_two_apps_with_different_settings_use_their_own(tmp_path: Path, unique_email: str) -> None:
    first_settings = _settings(tmp_path, "first", memory_kib=19_456)
    second_settings = _settings(tmp_path, "second", memory_kib=20_480)
    first, second = create_app(first_settings), create_app(second_settings)  # both built before either runs

    async with running(first) as client:
        await Api(client).signup(unique_email)
        first_hash = await User.select(User.password_hash).where(User.email == unique_email).first().run()
    async with running(second) as client:
        assert not await User.exists().where(User.email == unique_email).run()  # not in the second file
        await Api(client).signup(unique_email)
        second_hash = await User.select(User.password_hash).where(User.email == unique_email).first().run()
    async with running(first):  # the first app again: its own file, untouched by the second
        assert await User.count().where(User.email == unique_email).run() == 1

    assert first_hash is not None
    assert second_hash is not None
    assert "m=19456," in first_hash["password_hash"]
    assert "m=20480," in second_hash["password_hash"]
