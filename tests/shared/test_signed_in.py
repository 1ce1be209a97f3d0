"""Routes that need a signed-in caller declare `opt=SIGNED_IN_ONLY`, checked by the service's route
middleware; no route uses a Litestar guard, which costs a copy of the route handler on every request
(14 % of the instructions of `GET /api/users/me`; issue 18, bench/FINDINGS.md)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from litestar import Litestar
from litestar.handlers import BaseRouteHandler

from shared.caller import SIGNED_IN


def _auth() -> Litestar:
    from services.auth.app import create_app
    from tests.auth.support import auth_settings

    return create_app(auth_settings())


def _canvas() -> Litestar:
    from services.canvas.app import create_app
    from tests.canvas.support import canvas_settings

    return create_app(canvas_settings())


def handlers_of(app: Litestar) -> dict[str, BaseRouteHandler]:
    found: dict[str, BaseRouteHandler] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            assert isinstance(handler, BaseRouteHandler)
            found[f"{route.path} {handler.handler_name}"] = handler
    return found


@pytest.mark.parametrize("build", [_auth, _canvas], ids=["auth", "canvas"])
def test_no_route_has_a_litestar_guard(build: Callable[[], Litestar]) -> None:
    guarded = {
        name: [guard.__name__ for layer in handler.ownership_layers for guard in layer.guards or []]
        for name, handler in handlers_of(build()).items()
    }
    assert {name: guards for name, guards in guarded.items() if guards} == {}


@pytest.mark.parametrize("build", [_auth, _canvas], ids=["auth", "canvas"])
def test_every_route_taking_the_signed_in_caller_declares_it(build: Callable[[], Litestar]) -> None:
    # `caller` (CallerDep) would answer 401 too, but only after the body was decoded (a 422 first).
    handlers = handlers_of(build())
    taking = {name for name, h in handlers.items() if "caller" in inspect.signature(h.fn).parameters}
    declaring = {name for name, h in handlers.items() if h.opt.get(SIGNED_IN)}
    assert taking  # the signed-in routes were found
    assert taking <= declaring
