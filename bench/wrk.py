"""wrk on loopback: a Lua script per run (headers, bodies, a request mix), results read as JSON.

Every script ends with a `done()` that prints one `WRK_JSON {...}` line with wrk's own counters and
latency percentiles (microseconds), so nothing is scraped from wrk's human-readable summary. wrk is
closed-loop: each connection sends its next request when the previous answer arrived.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Run

MARKER = "WRK_JSON "
CHUNK_MAX = 10.0  # seconds: the longest of the runs that make up a request count

DONE_LUA = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, "connect": %.0f, "read": %.0f, '
    .. '"write": %.0f, "status": %.0f, "timeout": %.0f, "p50_us": %.0f, "p90_us": %.0f, '
    .. '"p99_us": %.0f, "mean_us": %.1f, "max_us": %.0f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class Request:
    path: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None


def lua_string(text: str) -> str:
    """A Lua string literal for any text (bytes outside printable ASCII as decimal escapes)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '\\"':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _lua_table(headers: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items()) + "}"


def script(requests: Sequence[Request]) -> str:
    """One request: wrk's static request (no Lua per request). Several: pre-built, sent in turn."""
    if not requests:
        raise ValueError("wrk needs at least one request")
    lines = []
    if len(requests) == 1:
        (req,) = requests
        lines.append(f"wrk.method = {lua_string(req.method)}")
        lines.append(f"wrk.path = {lua_string(req.path)}")
        lines += [f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in req.headers.items()]
        if req.body is not None:
            lines.append(f"wrk.body = {lua_string(req.body)}")
    else:
        specs = ",\n  ".join(
            f"{{{lua_string(r.method)}, {lua_string(r.path)}, {_lua_table(r.headers)}, "
            f"{lua_string(r.body) if r.body is not None else 'nil'}}}"
            for r in requests
        )
        lines.append(f"local specs = {{\n  {specs}\n}}")
        lines.append(
            "local built = {}\nlocal next_one = 0\n"
            "function init(args)\n"
            "  for i, s in ipairs(specs) do built[i] = wrk.format(s[1], s[2], s[3], s[4]) end\n"
            "end\n"
            "function request()\n"
            "  next_one = next_one % #built + 1\n"
            "  return built[next_one]\n"
            "end"
        )
    lines.append(DONE_LUA)
    return "\n".join(lines) + "\n"


class WrkError(RuntimeError):
    pass


# wrk runs in progress; a run that overlapped another cannot tell its own CPU time from the other's.
_active: list[dict[str, bool]] = []


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run(
    label: str,
    base_url: str,
    requests: Sequence[Request],
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Run wrk for `seconds` (whole seconds, at least one), in `env` if given."""
    threads = max(1, min(threads, connections))
    name = re.sub(r"[^A-Za-z0-9.,_-]+", "_", label)
    path = workdir / f"wrk-{name}.lua"
    path.write_text(script(requests))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    mine = {"solo": not _active}
    for other in _active:
        other["solo"] = False
    _active.append(mine)
    cpu_before, began = _children_cpu(), time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            "-s",
            str(path),
            base_url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=None if env is None else dict(env),
        )
        out, _ = await proc.communicate()
    finally:
        _active.remove(mine)
    cpu_share = (_children_cpu() - cpu_before) / (time.perf_counter() - began)
    text = out.decode(errors="replace")
    with (workdir / f"wrk-{name}.out").open("a") as log:
        log.write(text)
    found = parse(label, text, connections=connections, target=base_url)
    found.overlapped = not mine["solo"]
    found.generator_cpu = None if found.overlapped else cpu_share
    return found


async def run_count(
    label: str,
    base_url: str,
    requests: Sequence[Request],
    *,
    connections: int,
    total: int,
    workdir: Path,
) -> Run:
    """About `total` requests: wrk runs back to back, each sized by the rate seen so far, until enough
    were answered (wrk itself can only stop at a deadline). Latencies are left out: no single run's
    percentiles stand for the whole."""
    parts: list[Run] = []
    chunk = 1.0
    while (served := sum(p.requests for p in parts)) < total:
        parts.append(
            await run(label, base_url, requests, connections=connections, seconds=chunk, workdir=workdir)
        )
        rate = sum(p.requests for p in parts) / sum(p.seconds for p in parts)
        chunk = min(CHUNK_MAX, max(1.0, (total - served - parts[-1].requests) / max(rate, 1.0)))
    seconds = sum(p.seconds for p in parts)
    cpu_seconds = [p.generator_cpu * p.seconds for p in parts if p.generator_cpu is not None]
    return Run(
        label,
        base_url,
        f"wrk ({len(parts)} runs back to back)",
        connections,
        served,
        seconds,
        errors=sum(p.errors for p in parts),
        generator_cpu=sum(cpu_seconds) / seconds if len(cpu_seconds) == len(parts) else None,
    )


def parse(label: str, text: str, *, connections: int, target: str) -> Run:
    for line in text.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line.removeprefix(MARKER))
            break
    else:
        raise WrkError(f"wrk printed no results for {label}:\n{text[-2000:]}")
    errors = sum(int(data[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return Run(
        label=label,
        target=target,
        generator="wrk",
        connections=connections,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )
