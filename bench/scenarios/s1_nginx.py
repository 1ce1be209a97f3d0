"""1. Gateway vs nginx: the authenticated canvas read through our gateway against nginx + auth_request."""

from __future__ import annotations

import asyncio
import os

from bench import wrk
from bench.context import Context
from bench.load import Target, judge_ratio, side_by_side
from bench.nginx import Nginx
from bench.report import SKIP, Outcome, rps
from bench.scenarios.base import Scenario, check_errors

CONNECTIONS = 64
GOAL_RATIO = 1.5
# The auth service's forward-auth endpoint for nginx's auth_request: Bearer token in, signed
# credential out in X-Internal-Auth (200), or 401.
FORWARD_AUTH_PATH = os.environ.get("BENCH_FORWARD_AUTH_PATH", "/internal/forward-auth")


async def _forward_auth_missing(ctx: Context) -> str | None:
    url = ctx.system.url("auth") + FORWARD_AUTH_PATH
    # As nginx asks it (bench/nginx.py): the original request's path names the credential's audience.
    headers = {**ctx.fixtures.reader.bearer, "X-Original-URI": f"/api/canvases/{ctx.fixtures.public_canvas}"}
    async with ctx.api.http.get(url, headers=headers) as resp:
        if 200 <= resp.status < 300 and resp.headers.get("x-internal-auth"):  # any 2xx, as nginx
            return None
        return f"GET {FORWARD_AUTH_PATH} with a valid Bearer token answered {resp.status}"


async def run(ctx: Context, out: Outcome) -> None:
    missing = await _forward_auth_missing(ctx)
    if missing:
        out.status = SKIP
        out.notes.append(
            "Not measured: the auth service has no forward-auth endpoint for nginx's auth_request "
            f"({missing}); it must validate the Bearer token and return the signed credential in "
            "X-Internal-Auth."
        )
        return
    nginx_bin = ctx.tools.path("nginx")
    assert nginx_bin
    nginx = Nginx(
        nginx_bin,
        ctx.workdir / "nginx",
        auth_port=ctx.system.ports["auth"],
        canvas_port=ctx.system.ports["canvas"],
        forward_auth_path=FORWARD_AUTH_PATH,
        workers="auto",
    )
    await asyncio.to_thread(nginx.start)
    ctx.system.also_watched["nginx"] = nginx.pid
    try:
        reader = ctx.fixtures.reader
        read = [wrk.Request(f"/api/canvases/{ctx.fixtures.private_canvas}", headers=reader.bearer)]
        ours, ref = await side_by_side(
            ctx,
            [
                Target("gateway", ctx.system.url("gateway"), lambda: read),
                Target("nginx + auth_request", nginx.url, lambda: read),
            ],
            CONNECTIONS,
        )
    finally:
        ctx.system.also_watched.pop("nginx", None)
        await asyncio.to_thread(nginx.stop)
    out.runs = [ours, ref]
    out.ours, out.reference = rps(ours), rps(ref)
    out.ratio_of = "gateway / nginx req/s, median round"
    out.judge(judge_ratio(out, ours, ref, GOAL_RATIO))
    check_errors(out)


SCENARIO = Scenario(
    run=run,
    number=1,
    title="Gateway vs nginx",
    goal=f"≥ {GOAL_RATIO}x nginx req/s at {CONNECTIONS} connections",
    doc=f"""
Authenticated `GET /api/canvases/{{id}}` (the reader's own private canvas, Bearer token) at
{CONNECTIONS} connections: through our gateway (session cache in Redis, signed credential, aiohttp
upstream pool) against nginx in front of the same canvas service, with `auth_request` to the auth
service's forward-auth endpoint (`{FORWARD_AUTH_PATH}`) on every request (nginx caches nothing), its
`X-Internal-Auth` answer passed on with `auth_request_set` + `proxy_set_header`; nginx runs
`worker_processes auto` with keep-alive pools to both services. Ratio: gateway req/s / nginx req/s.
""",
    needs=("wrk", "nginx"),
    profiled=("gateway", "canvas"),
)
