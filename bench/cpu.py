"""CPU time of the system's processes (from /proc), to tell where a request's cost goes.

Throughput on a shared 2-core machine moves with whatever else runs; the CPU seconds each process
spends per request move much less, and say which process a missed goal should be looked for in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state on: the command may hold spaces


def _parents() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            found[int(entry.name)] = int(fields[1])
    return found


def _own(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


Snapshot = dict[str, dict[int, float]]  # group name -> pid -> CPU seconds so far


def family(pids: list[int], parents: dict[int, int] | None = None) -> set[int]:
    """These processes and their live descendants (nginx's or uvicorn's workers)."""
    parents = _parents() if parents is None else parents
    tree, frontier = set(pids), list(pids)
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    return tree


def snapshot(processes: Mapping[str, list[int]]) -> Snapshot:
    """CPU seconds so far of each process of each named group, and of their live descendants."""
    parents = _parents()
    return {name: {pid: _own(pid) for pid in family(pids, parents)} for name, pids in processes.items()}


def per_request_ms(before: Snapshot, after: Snapshot, requests: int) -> dict[str, float]:
    """CPU ms per request by group: processes that appeared during the run count from zero, those gone
    by its end are left out."""
    if requests <= 0:
        return {}
    return {
        name: sum(seconds - before.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
        * 1000
        / requests
        for name, pids in after.items()
    }
