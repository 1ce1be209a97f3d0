"""The one schemathesis runner: its CLI against a running gateway's OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from devtools.processes import ROOT

# The answers contradict nothing the document says (named one by one, not `--checks all`: `all`
# also turns on `max_response_time`, a 10 s timer that fails a run on a loaded machine).
CONFORMANCE = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


def run_schemathesis(
    base: str,
    *,
    checks: Sequence[str],
    phases: Sequence[str],
    examples: int,
    seed: int,
    headers: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    workers: int = 1,
    options: Sequence[str] = (),
    timeout: float = 600,
) -> None:
    """Run schemathesis over `base`'s /schema/openapi.json; fail with the end of its report.
    `include`/`exclude`: operation ids; `headers`: `Name: value` lines sent with every request."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{base}/schema/openapi.json"),
        *("--checks", ",".join(checks), "--phases", ",".join(phases)),
        *("--max-examples", str(examples), "--seed", str(seed), "--workers", str(workers)),
        *("--request-timeout", "10"),
        *[arg for header in headers for arg in ("--header", header)],
        *[arg for op in include for arg in ("--include-operation-id", op)],
        *[arg for op in exclude for arg in ("--exclude-operation-id", op)],
        *options,
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-2000:]
