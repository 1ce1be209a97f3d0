"""What the auth app's handlers depend on, built once by the app's lifespan (`app.state.container`)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from services.auth.passwords import Passwords
from services.auth.recovery import MailRequestLimit
from services.auth.sessions import SessionService
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle


@dataclass(frozen=True, kw_only=True)
class Container:
    settings: AuthSettings
    redis: Redis
    passwords: Passwords
    sessions: SessionService
    throttle: LoginThrottle
    mail_limit: MailRequestLimit

    @classmethod
    def build(cls, settings: AuthSettings, redis: Redis) -> Container:
        return cls(
            settings=settings,
            redis=redis,
            passwords=Passwords(settings),
            sessions=SessionService(redis, settings),
            throttle=LoginThrottle(redis, settings),
            mail_limit=MailRequestLimit(redis, settings),
        )
