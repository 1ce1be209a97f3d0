"""The gateway's access log: one structured line per request, on by default, GATEWAY_ACCESS_LOG=false
turns it off. Read from the real process's log once it has stopped (every line written by then)."""

from __future__ import annotations

import json
from collections.abc import Callable

from devtools.processes import Process
from tests.support.http import Client
from tests.support.processes import url_of

JSON_INFO = {"LOG_LEVEL": "INFO", "LOG_JSON": "true"}


def access_lines(process: Process) -> list[dict[str, object]]:
    process.stop()
    lines = []
    for raw in process.log_path.read_text().splitlines():
        if raw.startswith("{"):
            entry = json.loads(raw)
            if entry.get("event") == "access":
                lines.append(entry)
    return lines


async def test_one_line_per_request_with_route_status_duration_request_id_client(
    http: Client, start_gateway: Callable[..., Process]
) -> None:
    process = start_gateway(env=JSON_INFO)
    gateway = url_of(process)
    read = await http("GET", f"{gateway}/api/canvases/some-id", headers={"X-Request-Id": "trace-read-1"})
    missing = await http("GET", f"{gateway}/no/such/route", headers={"X-Request-Id": "trace-404-1"})
    assert missing.status == 404

    logged = access_lines(process)
    assert [line["request_id"] for line in logged].count("trace-read-1") == 1  # one line per request
    lines = {line["request_id"]: line for line in logged}
    assert lines["trace-read-1"]["route"] == "/api/canvases/{id}"  # the template, not the raw path
    assert lines["trace-read-1"]["status"] == read.status
    assert lines["trace-read-1"]["method"] == "GET"
    assert lines["trace-404-1"]["route"] == "unmatched"
    assert lines["trace-404-1"]["status"] == 404
    for line in (lines["trace-read-1"], lines["trace-404-1"]):
        assert line["client"] == "127.0.0.1"
        assert line["service"] == "gateway"
        assert isinstance(line["duration_ms"], float)
        assert line["duration_ms"] >= 0


async def test_gateway_access_log_false_turns_it_off(
    http: Client, start_gateway: Callable[..., Process]
) -> None:
    process = start_gateway(env=JSON_INFO, access_log="false")
    gateway = url_of(process)
    await http("GET", f"{gateway}/api/canvases/some-id", headers={"X-Request-Id": "trace-off-1"})
    assert access_lines(process) == []
