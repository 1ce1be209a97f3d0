"""/health, /ready and /metrics, the same on every process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Response, get
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.router import Router

from shared.errors import problem

ReadyCheck = Callable[[], Awaitable[Any]]
READY_TIMEOUT = 2.0


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

    @get("/ready", include_in_schema=False)
    async def ready() -> Response[dict[str, Any]]:
        failed = []
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), READY_TIMEOUT)
            except Exception:
                failed.append(name)
        if failed:
            raise problem(503, f"not ready: {', '.join(failed)}", headers={"Retry-After": "5"}, failed=failed)
        return Response({"status": "ready", "checks": sorted(checks)})

    class Metrics(PrometheusController):
        path = "/metrics"
        include_in_schema = False

    return Router(path="/", route_handlers=[health, ready, Metrics])
