"""/health, /ready and /metrics, the same on every process."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Response, get
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.router import Router
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

from shared.db import MigrationsMissing
from shared.errors import Unavailable

ReadyCheck = Callable[[], Awaitable[Any]]


def metrics_registry() -> CollectorRegistry:
    """What a scrape reports: under PROMETHEUS_MULTIPROC_DIR (docker-compose sets it), every worker of
    this process writes its metrics to files there and this adds them all up, as Litestar's
    PrometheusController does; otherwise this process's own registry."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


READY_TIMEOUT = 2.0
# /ready answers from one run of its checks for this long, and concurrent calls share the run in
# progress: a flood of /ready costs the dependencies one check a second, not one per request.
READY_CACHE = 1.0


def prometheus_config(service: str) -> PrometheusConfig:
    return PrometheusConfig(
        app_name=service,
        prefix="canvasverse",
        group_path=True,  # label by route template, not raw path: bounded cardinality
        exclude=["/metrics", "/health"],
    )


def ops_router(checks: Mapping[str, ReadyCheck]) -> Router:
    @get("/health", include_in_schema=False, sync_to_thread=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    last: dict[str, Any] = {"at": -READY_CACHE, "failed": [], "reasons": [], "run": None}

    async def run_checks() -> list[str]:
        failed = []
        reasons = []
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), READY_TIMEOUT)
            except MigrationsMissing as exc:  # the one failure whose reason helps the operator
                failed.append(name)
                reasons.append(str(exc))
            except Exception:
                failed.append(name)
        last["at"], last["failed"], last["reasons"], last["run"] = time.monotonic(), failed, reasons, None
        return failed

    async def current_failures() -> list[str]:
        if time.monotonic() - last["at"] < READY_CACHE:
            return last["failed"]  # type: ignore[no-any-return]
        if last["run"] is None:
            last["run"] = asyncio.ensure_future(run_checks())
        return await asyncio.shield(last["run"])

    @get("/ready", include_in_schema=False)
    async def ready() -> Response[dict[str, Any]]:
        failed = await current_failures()
        if failed:
            detail = f"not ready: {', '.join(failed)}" + "".join(f"; {reason}" for reason in last["reasons"])
            raise Unavailable(detail, retry_after=5, failed=failed)
        return Response({"status": "ready", "checks": sorted(checks)})

    class Metrics(PrometheusController):
        path = "/metrics"
        include_in_schema = False

    return Router(path="/", route_handlers=[health, ready, Metrics])
