"""shared/dependencies.py: plain providers resolved inline give handlers what Litestar's task group gave."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import Litestar, Request, get
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.di import Provide
from litestar.testing import AsyncTestClient

import shared.app  # noqa: F401 - installs the inline resolution, as every service app does
from shared import dependencies

cleaned: list[str] = []


def _first() -> str:
    return "first"


def _second(first: str) -> str:  # depends on another: a later batch
    return first + "+second"


def _third() -> int:
    return 3


def _broken() -> int:
    raise ValueError("provider failed")


def _path_of(request: Request[Any, Any, Any]) -> str:  # takes only the request: called with it
    return request.url.path


def _path_and_first(request: Request[Any, Any, Any], first: str) -> str:  # and another: Litestar's way
    return f"{first} {request.url.path}"


calls: list[str] = []


def _counted(request: Request[Any, Any, Any]) -> int:  # cached (use_cache): Litestar's way, called once
    calls.append(request.url.path)
    return len(calls)


def _generator() -> Iterator[str]:
    yield "generated"
    cleaned.append("generated")


@get("/plain", sync_to_thread=False)
def plain(first: str, second: str, third: int) -> dict[str, object]:
    return {"first": first, "second": second, "third": third}


@get("/broken", sync_to_thread=False)
def broken(first: str, broken: int) -> dict[str, object]:
    return {}


@get("/generator", sync_to_thread=False)
def generator(third: int, generated: str) -> dict[str, object]:
    return {"third": third, "generated": generated}


@get("/request", sync_to_thread=False)
def by_request(where: str, path_and_first: str, counted: int) -> dict[str, object]:
    return {"where": where, "path_and_first": path_and_first, "counted": counted}


APP = Litestar(
    route_handlers=[plain, broken, generator, by_request],
    dependencies={
        "first": Provide(_first, sync_to_thread=False),
        "second": Provide(_second, sync_to_thread=False),
        "third": Provide(_third, sync_to_thread=False),
        "broken": Provide(_broken, sync_to_thread=False),
        "generated": Provide(_generator, sync_to_thread=False),
        "where": Provide(_path_of, sync_to_thread=False),
        "path_and_first": Provide(_path_and_first, sync_to_thread=False),
        "counted": Provide(_counted, sync_to_thread=False, use_cache=True),
    },
)


def test_the_inline_resolution_is_installed() -> None:
    assert KwargsModel.resolve_dependencies is dependencies.resolve_dependencies


async def test_plain_providers_resolve_in_order_and_failures_propagate() -> None:
    async with AsyncTestClient(APP) as client:
        resp = await client.get("/plain")
        assert resp.status_code == 200
        assert resp.json() == {"first": "first", "second": "first+second", "third": 3}
        assert (await client.get("/broken")).status_code == 500  # the provider's ValueError, not a hang


async def test_a_generator_provider_keeps_litestars_own_path_and_its_cleanup() -> None:
    cleaned.clear()
    async with AsyncTestClient(APP) as client:
        resp = await client.get("/generator")
    assert resp.json() == {"third": 3, "generated": "generated"}
    assert cleaned == ["generated"]


async def test_a_provider_taking_only_the_request_gets_it() -> None:
    calls.clear()
    async with AsyncTestClient(APP) as client:
        first = (await client.get("/request")).json()
        second = (await client.get("/request")).json()
    assert first == {"where": "/request", "path_and_first": "first /request", "counted": 1}
    assert second == first  # the cached provider's value, kept by Litestar
    assert calls == ["/request"]
