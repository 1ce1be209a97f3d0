"""Every route guard of each service is a coroutine function: Litestar runs a plain function guard in a
worker thread (`ensure_async_callable` → `sync_to_thread`), a thread hop on every guarded request
(it was ~30 % of the auth service's CPU for `GET /api/users/me`; issue 18, bench/FINDINGS.md)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.handlers import BaseRouteHandler


def _auth() -> Litestar:
    from services.auth.app import create_app
    from tests.auth.support import auth_settings

    return create_app(auth_settings())


def _canvas() -> Litestar:
    from services.canvas.app import create_app
    from tests.canvas.support import canvas_settings

    return create_app(canvas_settings())


def guards_of(app: Litestar) -> dict[str, list[Callable[..., object]]]:
    found: dict[str, list[Callable[..., object]]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            assert isinstance(handler, BaseRouteHandler)
            layers = handler.ownership_layers
            found[f"{route.path} {handler.handler_name}"] = [
                g for layer in layers for g in layer.guards or []
            ]
    return found


@pytest.mark.parametrize("build", [_auth, _canvas], ids=["auth", "canvas"])
def test_every_guard_is_a_coroutine_function(build: Callable[[], Litestar]) -> None:
    guards = guards_of(build())
    assert any(guards.values())  # the guarded routes were found
    plain = {
        route: [g.__name__ for g in found if not inspect.iscoroutinefunction(g)]
        for route, found in guards.items()
    }
    assert {route: names for route, names in plain.items() if names} == {}
