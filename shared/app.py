"""The one way every service builds its Litestar app: errors, logging, request ids, metrics."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler
from piccolo.conf.apps import AppConfig
from piccolo.engine.base import Engine

from shared import caller, dependencies
from shared.auth_middleware import AnyRequest, CredentialCheck
from shared.db import migrations_check, ping
from shared.errors import EXCEPTION_HANDLERS, problem_details_plugin
from shared.heap import settled_heap
from shared.logging import configure_logging
from shared.ops import ReadyCheck, ops_router, prometheus_config
from shared.request_id import RequestIdMiddleware
from shared.route_middleware import ServiceRouteMiddleware
from shared.settings import CommonSettings, log_startup_warnings
from shared.version import VERSION

dependencies.install()  # plain providers resolved inline, not in a task group (shared/dependencies.py)

# A readiness check on the service's `Container` (what its lifespan built).
ContainerCheck = Callable[[Any], Awaitable[Any]]


def create_service_app(
    *,
    name: str,
    settings: CommonSettings,
    route_handlers: Sequence[ControllerRouterHandler],
    lifespan: Sequence[Callable[[Litestar], AbstractAsyncContextManager[Any]]] = (),
    database: tuple[Engine[Any], AppConfig] | None = None,
    container_checks: Mapping[str, ContainerCheck] | None = None,
    ready_checks: Mapping[str, ReadyCheck] | None = None,
    request_max_body_size: int = 2 * 1024 * 1024,
    audiences: Collection[str] | None = None,
    dependencies: Mapping[str, Provide] | None = None,
    **config: Any,
) -> Litestar:
    """An internal service: every route but the ops routes needs the signed internal credential,
    signed for this service (`audiences`, default: its `name`). `dependencies` (each reading the
    service's `Container`) are provided app-wide, with `caller` and `maybe_caller` (shared/caller.py).

    `/ready` checks the `database` (its engine answers, and every migration of its Piccolo app is
    applied), then each of `container_checks` on the `Container` the lifespan built (`redis_answers`,
    ...), then `ready_checks`."""
    configure_logging(name, json=settings.json_logs, level=settings.log_level)
    log_startup_warnings(settings)
    prometheus = prometheus_config(name)

    def on_container(check: ContainerCheck) -> ReadyCheck:
        async def run() -> None:
            await check(app.state.container)  # app.state: Litestar copies a State it is given

        return run

    checks: dict[str, ReadyCheck] = {}
    if database is not None:
        engine, piccolo_app = database
        checks["database"] = functools.partial(ping, engine)
        checks["migrations"] = migrations_check(
            engine, piccolo_app.app_name, piccolo_app.migrations_folder_path
        )
    checks |= {check_name: on_container(check) for check_name, check in (container_checks or {}).items()}
    checks |= ready_checks or {}
    app = Litestar(
        route_handlers=[ops_router(checks), *route_handlers],
        lifespan=[*lifespan, settled_heap],  # last: once every client is built
        middleware=[  # metrics, the internal credential and the JSON body, in one layer
            DefineMiddleware(
                ServiceRouteMiddleware,
                config=prometheus,
                credentials=CredentialCheck(settings.secret, audiences or {name}),
                body_limit=request_max_body_size,
            )
        ],
        dependencies={**caller.DEPENDENCIES, **(dependencies or {})},
        plugins=[problem_details_plugin()],
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=OpenAPIConfig(title=f"canvas-verse {name}", version=VERSION, path="/schema"),
        request_max_body_size=request_max_body_size,
        debug=False,
        logging_config=None,  # Litestar's default would replace the structlog setup above
        **config,
    )
    wrap_outermost(app)
    return app


async def redis_answers(container: Any) -> None:
    """A container check: the service's Redis client (`Container.redis`) answers PING."""
    await container.redis.ping()


def from_container(**attributes: str) -> dict[str, Provide]:
    """A service's app-level dependencies, each one attribute of its `Container` (built by the
    lifespan, kept in `app.state.container`): `from_container(sessions="sessions", config="settings")`."""

    def provider(attribute: str) -> Provide:
        def provide(request: AnyRequest) -> Any:
            return getattr(request.app.state.container, attribute)

        return Provide(provide, sync_to_thread=False)

    return {name: provider(attribute) for name, attribute in attributes.items()}


def wrap_outermost(app: Litestar) -> None:
    # Litestar's app-level middleware runs only for matched routes; the request id must also
    # reach 404/405 answers, so it wraps the whole ASGI handler.
    app.asgi_handler = RequestIdMiddleware(app.asgi_handler)


def entry_point(build: Callable[[], Litestar]) -> Callable[[str], Litestar]:
    """A module `__getattr__` serving `module:app` (uvicorn's entry point): `build()` runs once, when
    `app` is first asked for, so importing the module reads no environment."""
    built = functools.cache(build)

    def module_getattr(name: str) -> Litestar:
        if name == "app":
            return built()
        raise AttributeError(name)

    return module_getattr
