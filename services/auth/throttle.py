"""Password throttling in Redis: failures per account and per client address over a fixed window.

Two scopes, counted apart: LOGIN (docs/api.md's login throttling) and CURRENT_PASSWORD, the current
password asked for by an email change, a password change and an account deletion (users.py). They
are kept apart so that a locked login never changes what docs/api.md promises for those routes (a right
password is 204/200), and a session holder guessing the current password never locks its owner's
logins; each scope has the same limits.

After `throttle_account_limit` failures on an account (default 10 in 15 minutes) every login for it
is refused with 429 until the window ends; after `throttle_client_limit` failures from one client
address (default 100), likewise for that client. A success clears the account's count.

Counting only finished failures would let a burst of concurrent attempts all reach the hash check
before the first failure is counted, so attempts are also admitted under a per-account in-flight
cap (default 10). An account therefore gets at most limit + cap - 1 = 19 hash checks per window,
which keeps it under 100 in any hour (a rolling hour touches at most 5 windows).

Without Redis the limits cannot be enforced, so logins fail closed (503) rather than open. The
routes behind a session fail open instead (users.py says why).
"""

from __future__ import annotations

import hashlib
import math

import structlog
from redis.asyncio import Redis

from services.auth.settings import AuthSettings
from shared.errors import TooManyRequests, Unavailable
from shared.redis import REDIS_UNAVAILABLE

log = structlog.get_logger()

LOGIN = "login"
CURRENT_PASSWORD = "current-password"  # noqa: S105 - a key scope, not a password
IN_FLIGHT_TTL_MS = 60_000  # clears the in-flight count of attempts whose process died mid-check

# KEYS: account failures, account in-flight, client failures.
# ARGV: account limit, client limit, in-flight cap, in-flight TTL (ms), window (ms).
# Returns 0 when admitted (in-flight count taken), else the milliseconds until a retry may pass.
_ADMIT = """
local function remaining(key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then return ttl end
  redis.call('PEXPIRE', key, ARGV[5])
  return tonumber(ARGV[5])
end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return remaining(KEYS[1]) end
if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[2]) then return remaining(KEYS[3]) end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[3]) then return 1000 end
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
"""

# KEYS as above. ARGV: 1 when the attempt failed else 0, window (ms).
_SETTLE = """
if redis.call('DECR', KEYS[2]) <= 0 then redis.call('DEL', KEYS[2]) end
if ARGV[1] == '1' then
  for _, key in ipairs({KEYS[1], KEYS[3]}) do
    if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2]) end
  end
else
  redis.call('DEL', KEYS[1])
end
return 0
"""


class LoginThrottle:
    def __init__(self, redis: Redis, settings: AuthSettings) -> None:
        self.window_ms = int(settings.throttle_window.total_seconds() * 1000)
        self.account_limit = settings.throttle_account_limit
        self.client_limit = settings.throttle_client_limit
        self.in_flight = settings.throttle_account_in_flight
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)

    @staticmethod
    def _keys(email: str, client: str, scope: str = LOGIN) -> list[str]:
        account = hashlib.sha256(email.encode()).hexdigest()  # no addresses in Redis key names
        return [
            f"auth:{scope}:fail:{account}",
            f"auth:{scope}:busy:{account}",
            f"auth:{scope}:client:{client}",
        ]

    async def admit(self, email: str, client: str, *, scope: str = LOGIN, fail_open: bool = False) -> bool:
        """Take an attempt for this account and client (True), or raise 429 with Retry-After.

        Without Redis: 503; with `fail_open`, False instead (the attempt goes ahead uncounted).
        """
        args = [self.account_limit, self.client_limit, self.in_flight, IN_FLIGHT_TTL_MS, self.window_ms]
        try:
            wait_ms = int(await self._admit(keys=self._keys(email, client, scope), args=args))
        except REDIS_UNAVAILABLE as exc:
            log.error("password_throttle_unavailable", error=str(exc), fail_open=fail_open)
            if fail_open:
                return False
            raise Unavailable("Password checks are temporarily unavailable; try again shortly") from exc
        if wait_ms:
            log.warning("password_throttled", client=client)
            raise TooManyRequests(
                "Too many failed password attempts; try again later", math.ceil(wait_ms / 1000)
            )
        return True

    async def settle(self, email: str, client: str, *, failed: bool, scope: str = LOGIN) -> None:
        """Record how an admitted attempt ended: a failure counts, a success clears the account."""
        try:
            keys = self._keys(email, client, scope)
            await self._settle(keys=keys, args=[int(failed), self.window_ms])
        except REDIS_UNAVAILABLE as exc:
            log.error("password_throttle_settle_failed", error=str(exc))
