"""Litestar resolves the dependencies a handler needs in batches, and runs a batch of more than one
in an anyio task group: two task spawns per request for a handler taking, say, `maybe_caller` and
`cache`, about 10 % of a cached canvas read's CPU (issue 18; `bench/FINDINGS.md`). The services'
providers are all plain functions (`sync_to_thread=False`, no generator): there is nothing to run
concurrently, so such a batch is resolved one dependency after the other, in the event loop, as the
task group would have (the first failure propagates, as Litestar re-raises the group's first).
A batch with any other provider keeps Litestar's task group. And a plain provider that takes only
the request (the services' are all such: `shared.app.from_container`'s, the caller's) is called with
it directly: Litestar would first validate its one argument, the connection itself, through the
provider's signature model (msgspec's `convert`), 3 % of a session validation's instructions and 7 %
of a cached canvas read's, which takes two. Applied once, on import, by `shared.app`."""

from __future__ import annotations

from typing import Any

from litestar._kwargs.cleanup import DependencyCleanupGroup
from litestar._kwargs.dependencies import DependencyContainer, resolve_dependency
from litestar._kwargs.kwargs_model import KwargsModel
from litestar.connection import ASGIConnection

_stock = KwargsModel.resolve_dependencies


def _plain(dependency: DependencyContainer) -> bool:
    provide = dependency.provide
    return bool(
        provide.has_sync_callable
        and not provide.sync_to_thread
        and not provide.has_sync_generator_dependency
        and not provide.has_async_generator_dependency
    )


async def resolve_dependencies(
    self: KwargsModel, connection: ASGIConnection[Any, Any, Any, Any], kwargs: dict[str, Any]
) -> DependencyCleanupGroup:
    if not all(_plain(d) for batch in self.dependency_batches for d in batch):
        return await _stock(self, connection, kwargs)
    cleanup_group = DependencyCleanupGroup()
    for batch in self.dependency_batches:
        for dependency in batch:
            provide = dependency.provide
            if not provide.use_cache and tuple(provide.signature_model._fields) == ("request",):
                kwargs[dependency.key] = provide.dependency(request=connection)
            else:
                await resolve_dependency(dependency, connection, kwargs, cleanup_group)
    return cleanup_group


def install() -> None:
    KwargsModel.resolve_dependencies = resolve_dependencies  # type: ignore[method-assign]
