"""Run a generator from another loopback address: builds bench/bind_source.c (an LD_PRELOAD shim
that binds each IPv4 socket to `BIND_SOURCE` before it connects) with the system's C compiler.

Scenario 9 runs its flood from `FLOOD_ADDRESS` and the other clients from 127.0.0.1, so the
gateway sees two clients, as it would in production; scenario 7's login clients each connect from
an address of their own; wrk itself has no option for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("bind_source.c")


def build(workdir: Path) -> Path:
    """The shared object, compiled into `workdir`; RuntimeError if there is no C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc, gcc) to build bench/bind_source.c")
    out = workdir / "bind_source.so"
    cmd = [compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(SOURCE), "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def env(shim: Path, address: str) -> dict[str, str]:
    """The environment for a child process whose IPv4 connections come from `address` (or from each
    address of a comma-separated list in turn, one per connection)."""
    preload = " ".join(p for p in (str(shim), os.environ.get("LD_PRELOAD", "")) if p)
    return {**os.environ, "LD_PRELOAD": preload, "BIND_SOURCE": address}
