"""The services' request metrics: the cached-labels middleware (shared/ops.py) records exactly what
Litestar's stock PrometheusMiddleware records for the same requests, and a service counts the
requests its route middleware refuses with their status."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.params import FromPath
from litestar.plugins.prometheus import PrometheusMiddleware
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from shared import internal_auth
from shared.app import create_service_app
from shared.ops import CachedLabelsPrometheusMiddleware, prometheus_config
from shared.settings import CommonSettings

METRICS = (
    "canvasverse_requests_total",
    "canvasverse_request_duration_seconds_count",
    "canvasverse_requests_error_total",
    "canvasverse_requests_in_progress",
)


@get("/items/{n:int}", sync_to_thread=False)
def item(n: FromPath[int]) -> dict[str, int]:
    if n == 0:
        raise RuntimeError("boom")  # a 500
    return {"n": n}


def _app(name: str, middleware_class: type[PrometheusMiddleware]) -> Litestar:
    config = dataclasses.replace(prometheus_config(name), middleware_class=middleware_class)
    return Litestar(route_handlers=[item], middleware=[config.middleware])


def _samples(name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name in METRICS and sample.labels.get("app_name") == name:
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "app_name"))
                found[(sample.name, labels)] = sample.value
    return found


@pytest.mark.parametrize("requests", [[1, 2, 0, 3, 0], [5]])
async def test_the_cached_middleware_counts_what_the_stock_one_counts(requests: list[int]) -> None:
    recorded = {}
    for name, cls in (
        (f"stock-{len(requests)}", PrometheusMiddleware),
        (f"cached-{len(requests)}", CachedLabelsPrometheusMiddleware),
    ):
        async with AsyncTestClient(_app(name, cls)) as client:
            for n in requests:
                await client.get(f"/items/{n}")
            await client.get("/nowhere")  # unmatched: no route, no metric
        recorded[cls] = _samples(name)
    stock, cached = recorded[PrometheusMiddleware], recorded[CachedLabelsPrometheusMiddleware]
    assert stock  # the stock middleware did count something
    assert cached == stock
    counted = {labels: value for (name, labels), value in cached.items() if name == METRICS[0]}
    ok = (("method", "GET"), ("path", "/items/{n}"), ("status_code", "200"))
    assert counted.get(ok) == sum(1 for n in requests if n), counted


@post("/api/things", sync_to_thread=False)
def add_thing(data: dict[str, Any]) -> dict[str, Any]:
    return data


async def test_a_service_counts_its_refusals_with_their_status() -> None:
    """A service's one route middleware (shared/route_middleware.py) counts a request its credential
    or body check refuses with the status the client got: the metrics layer used to sit outside
    those refusals and counted each as a 200."""
    name = "refusals"
    settings = CommonSettings()
    app = create_service_app(name=name, settings=settings, route_handlers=[add_thing])
    signed = internal_auth.sign(settings.secret, audience=name)
    other = internal_auth.sign(settings.secret, audience="another-service")
    sent = [
        ({}, b"{}", "application/json", 401),  # no credential
        ({internal_auth.HEADER: other}, b"{}", "application/json", 401),  # meant for another service
        ({internal_auth.HEADER: signed}, b"hi", "text/plain", 415),
        ({internal_auth.HEADER: signed}, b"{", "application/json", 400),
        ({internal_auth.HEADER: signed}, b'{"a": 1}', "application/json", 201),
    ]
    async with AsyncTestClient(app) as client:
        for headers, body, content_type, expected in sent:
            reply = await client.post(
                "/api/things", content=body, headers={**headers, "content-type": content_type}
            )
            assert reply.status_code == expected, reply.text
    counted = {
        dict(labels)["status_code"]: value
        for (metric, labels), value in _samples(name).items()
        if metric == METRICS[0]
    }
    assert counted == {"401": 2, "415": 1, "400": 1, "201": 1}, counted
