"""The compose suite runs only through `make test-compose` (COMPOSE_TEST=1): it needs Docker, builds
the image and takes minutes, so plain `make test` and `pytest` never collect it."""

from __future__ import annotations

import os

if os.environ.get("COMPOSE_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]
