"""The empty-route floor of the request-cost scenario: Litestar on uvicorn (the same command, HTTP
protocol and event loop as the services), one route answering a small JSON document, no middleware,
no dependency, no database, no Redis. What any request on this stack costs before our own code."""

from __future__ import annotations

from litestar import Litestar, get


@get("/empty", sync_to_thread=False)
def empty() -> dict[str, str]:
    return {"status": "ok"}


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[empty, health], openapi_config=None, logging_config=None, debug=False)
