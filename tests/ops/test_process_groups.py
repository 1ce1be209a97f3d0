"""The processes `make run`, the tests and the bench start share the supervisor's session (so one
scheduling group under Linux's autogroups) and each has a process group of its own (so a terminal's
Ctrl-C reaches only the supervisor, which stops them in order). bench/FINDINGS.md, 2026-12-08."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from devtools.processes import Process
from devtools.redis_server import RedisServer

pytestmark = pytest.mark.sqlite_only


def _assert_grouped(pid: int) -> None:
    assert os.getsid(pid) == os.getsid(0), "a session of its own: a scheduling group of its own"
    assert os.getpgid(pid) == pid, "not a process group of its own: a Ctrl-C would reach it"
    assert os.getpgid(pid) != os.getpgid(0)
    assert os.path.realpath(f"/proc/{pid}/fd/0") == "/dev/null"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_started_process_shares_the_session_in_a_group_of_its_own(tmp_path: Path) -> None:
    sleeper = Process(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "s.log"
    )
    sleeper.start()
    try:
        assert sleeper.proc is not None
        _assert_grouped(sleeper.proc.pid)
    finally:
        assert sleeper.stop(timeout=10, sig=signal.SIGTERM) == -signal.SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_redis_of_make_run_shares_the_session_in_a_group_of_its_own(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", appendonly=False).start()
    try:
        assert redis.process is not None
        _assert_grouped(redis.process.pid)
    finally:
        redis.stop()
    assert not redis.running
