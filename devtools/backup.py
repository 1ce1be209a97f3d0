"""`make backup`: a consistent copy of `make run`'s SQLite databases while the system runs.

Each service's database (AUTH_DATABASE_URL, CANVAS_DATABASE_URL: the environment, `.env`, or the
`run.env` that `make run` keeps in the data folder) is copied with SQLite's online backup API (what
`sqlite3 file ".backup copy"` does), so writes may go on meanwhile. PostgreSQL databases are not
copied here: use pg_dump (the README's Backups section).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from devtools.migrate import APPS, DEFAULT_URLS, sqlite_file
from shared.settings import load_dotenv


def backup(url: str, target: Path) -> None:
    source = sqlite_file(url)
    assert source is not None
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.backup", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--to", type=Path, help="folder for the copies (default: <DATA_DIR>/backups/<UTC time>)"
    )
    args = parser.parse_args(argv)
    load_dotenv()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = args.to or Path(os.environ.get("DATA_DIR") or "data") / "backups" / stamp
    status = 0
    for app in APPS:
        url = os.environ.get(f"{app.upper()}_DATABASE_URL") or DEFAULT_URLS[app]
        source = sqlite_file(url)
        if source is None:
            print(f"{app}: not SQLite ({url.split('://')[0]}): back it up with pg_dump", file=sys.stderr)
            continue
        if not source.is_file():
            print(f"{app}: no database at {source} (run `make migrate` or `make run` first)", file=sys.stderr)
            status = 1
            continue
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.name
        backup(url, target)
        print(f"{app}: {source} -> {target}")
    return status


if __name__ == "__main__":
    sys.exit(main())
