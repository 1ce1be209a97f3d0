"""Is the test PostgreSQL (TEST_POSTGRES_URL) usable? `make test` asks before its PostgreSQL run.

Exit 0 when it accepts a connection; 1 when nothing answers there (the run is skipped); 2 when a
server answers but refuses (wrong role, password or database: a misconfiguration, never a silent
skip), or when nothing answers and REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REACHABLE, UNREACHABLE, MISCONFIGURED = 0, 1, 2


async def check(url: str) -> tuple[int, str]:
    try:
        conn = await asyncpg.connect(url, timeout=3)
    except (OSError, TimeoutError) as exc:
        return UNREACHABLE, f"PostgreSQL not reachable at {url}: {exc}"
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return MISCONFIGURED, f"PostgreSQL at {url} refused the connection: {exc} (fix TEST_POSTGRES_URL)"
    await conn.close()
    return REACHABLE, f"PostgreSQL reachable at {url}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.pgcheck",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=f"TEST_POSTGRES_URL (default {DEFAULT_URL}); REQUIRE_POSTGRES=1 makes 'not reachable' exit 2.",
    )
    parser.parse_args(argv)
    url = os.environ.get("TEST_POSTGRES_URL", DEFAULT_URL)
    status, message = asyncio.run(check(url))
    if status == UNREACHABLE and os.environ.get("REQUIRE_POSTGRES") == "1":
        status, message = MISCONFIGURED, f"PostgreSQL is required (REQUIRE_POSTGRES=1): {message}"
    if status != REACHABLE:
        sys.stderr.write(message + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
