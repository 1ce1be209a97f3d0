"""wrk on loopback: a Lua script per run (headers, bodies, a request mix), results read as JSON.

Every script ends with a `done()` that prints one `WRK_JSON {...}` line with wrk's own counters and
latency percentiles (microseconds), so nothing is scraped from wrk's human-readable summary. wrk is
closed-loop: each connection sends its next request when the previous answer arrived.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.report import Run

MARKER = "WRK_JSON "
MAX_SECONDS = 900  # the duration bound of a run that stops after a request count

_DONE = r"""
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

# Counts answers per wrk thread and stops the thread after its share of the requests.
_STOP_AFTER = """
local answered = 0
function response(status, headers, body)
  answered = answered + 1
  if answered >= stop_after then wrk.thread:stop() end
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


def script(requests: Sequence[Request], *, stop_after: int | None = None) -> str:
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
    if stop_after is not None:
        lines.append(f"stop_after = {int(stop_after)}")
        lines.append(_STOP_AFTER)
    lines.append(_DONE)
    return "\n".join(lines) + "\n"


class WrkError(RuntimeError):
    pass


async def run(
    label: str,
    base_url: str,
    requests: Sequence[Request],
    *,
    connections: int,
    seconds: float | None = None,
    total: int | None = None,
    threads: int = 1,
    workdir: Path,
) -> Run:
    """Run wrk for `seconds`, or until about `total` answers (then each thread stops after its share)."""
    if (seconds is None) == (total is None):
        raise ValueError("give either seconds or total")
    threads = max(1, min(threads, connections))
    per_thread = None if total is None else -(-total // threads)
    path = workdir / f"wrk-{label.replace(' ', '_').replace('/', '_')}.lua"
    path.write_text(script(requests, stop_after=per_thread))
    duration = MAX_SECONDS if seconds is None else max(1, round(seconds))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(path),
        base_url,
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    (workdir / path.with_suffix(".out").name).write_text(text)
    return parse(label, text, connections=connections, target=base_url)


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
