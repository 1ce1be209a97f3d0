"""Exit 0 when PostgreSQL (TEST_POSTGRES_URL) answers, 1 when not; 2 (failure) if REQUIRE_POSTGRES=1."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def reachable() -> bool:
    try:
        conn = await asyncpg.connect(URL, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


if __name__ == "__main__":
    if asyncio.run(reachable()):
        sys.exit(0)
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        print(f"PostgreSQL is required but not reachable at {URL}", file=sys.stderr)
        sys.exit(2)
    sys.exit(1)
