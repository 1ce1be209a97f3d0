"""What the canvas app's handlers and loops depend on, built once by the app's lifespan
(`app.state.container`)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis

from services.canvas.auth_client import AuthClient
from services.canvas.background import Background
from services.canvas.cursors import CursorCodec
from services.canvas.read_cache import ReadCache
from services.canvas.settings import CanvasSettings
from services.canvas.view_counter import ViewCounter


@dataclass(frozen=True, kw_only=True)
class Container:
    settings: CanvasSettings
    redis: Redis
    http: aiohttp.ClientSession
    cursors: CursorCodec
    views: ViewCounter
    cache: ReadCache
    auth: AuthClient
    background: Background

    @classmethod
    def build(cls, settings: CanvasSettings, redis: Redis, http: aiohttp.ClientSession) -> Container:
        views = ViewCounter(redis, batch_retention=settings.view_batch_retention)
        cache = ReadCache.configured(views, settings)
        auth = AuthClient(http, settings.auth_url, settings.secret)
        return cls(
            settings=settings,
            redis=redis,
            http=http,
            cursors=CursorCodec(settings.secret),
            views=views,
            cache=cache,
            auth=auth,
            background=Background(settings, redis, views, cache, auth),
        )
