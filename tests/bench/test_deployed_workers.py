"""The worker count scenarios 4 and 14 run with is docker-compose.yml's, for every service."""

from __future__ import annotations

import re

from bench.system import DEPLOYED_WORKERS
from devtools.processes import ROOT


def test_the_deployed_worker_count_is_docker_compose_s() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    counts = dict(re.findall(r"\$\{(\w+)_WORKERS:-(\d+)\}", compose))
    assert set(counts) == {"AUTH", "CANVAS", "GATEWAY"}
    assert {int(n) for n in counts.values()} == {DEPLOYED_WORKERS}
