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

Per client, attempts are admitted against the failure limit with a reservation: the client's
failures plus its attempts in flight never exceed `throttle_client_limit`, so no burst of
concurrent logins with different emails overruns it (issue 14 saw 175 failures against a limit of
100). Every kind of password work (signups, logins, current-password checks) also shares one
per-client in-flight cap, `client_password_in_flight` (default 8): more at once is 429 at once, so
one client cannot fill the hashing queue others need. Signups are counted per client per
`signup_window` (default 1,000 an hour).

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

# Reasons a script refuses, with the Retry-After it computed.
FAILURES, IN_FLIGHT, SIGNUPS = 1, 2, 3

# KEYS: account failures, account in-flight, client failures, client in-flight (every kind of
# password work). ARGV: account limit, client limit, account in-flight cap, in-flight TTL (ms),
# window (ms), client in-flight cap.
# Returns {0, 0} when admitted (both in-flight counts taken), else {milliseconds until a retry may
# pass, reason}. The client's in-flight attempts count against its failure limit as if each were
# going to fail (a reservation), so no burst of concurrent attempts can take the failure count past
# the limit: failures + attempts in flight <= limit at every moment.
_ADMIT = """
local function remaining(key)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then return ttl end
  redis.call('PEXPIRE', key, ARGV[5])
  return tonumber(ARGV[5])
end
local client_failures = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return {remaining(KEYS[1]), 1} end
if client_failures >= tonumber(ARGV[2]) then return {remaining(KEYS[3]), 1} end
local client_busy = tonumber(redis.call('GET', KEYS[4]) or '0')
if client_busy >= tonumber(ARGV[6]) then return {1000, 2} end
if client_failures + client_busy >= tonumber(ARGV[2]) then return {1000, 2} end
if tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[3]) then return {1000, 2} end
for _, key in ipairs({KEYS[2], KEYS[4]}) do
  redis.call('INCR', key)
  redis.call('PEXPIRE', key, ARGV[4])
end
return {0, 0}
"""

# KEYS as above. ARGV: 1 when the attempt failed, 0 when it succeeded, 2 when it ended without an
# answer (hashing at capacity, a database error): only the in-flight counts are given back; window (ms).
_SETTLE = """
for _, key in ipairs({KEYS[2], KEYS[4]}) do
  if redis.call('DECR', key) <= 0 then redis.call('DEL', key) end
end
if ARGV[1] == '2' then return 0 end
if ARGV[1] == '1' then
  for _, key in ipairs({KEYS[1], KEYS[3]}) do
    if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[2]) end
  end
else
  redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: client in-flight, client signups. ARGV: client in-flight cap, in-flight TTL (ms), signup
# limit, signup window (ms). Returns {0, 0} when admitted, else {ms until a retry may pass, reason}.
_ADMIT_SIGNUP = """
local count = tonumber(redis.call('GET', KEYS[2]) or '0')
if count >= tonumber(ARGV[3]) then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl <= 0 then redis.call('PEXPIRE', KEYS[2], ARGV[4]); ttl = tonumber(ARGV[4]) end
  return {ttl, 3}
end
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return {1000, 2} end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {0, 0}
"""

# KEYS: client in-flight.
_RELEASE = """
if redis.call('DECR', KEYS[1]) <= 0 then redis.call('DEL', KEYS[1]) end
return 0
"""

_REFUSALS = {
    FAILURES: "Too many failed password attempts; try again later",
    IN_FLIGHT: "Too many password checks in flight for this client or account; try again shortly",
    SIGNUPS: "Too many signups from this client; try again later",
}


def _client_in_flight_key(client: str) -> str:
    return f"auth:password-work:busy:{client}"


class LoginThrottle:
    def __init__(self, redis: Redis, settings: AuthSettings) -> None:
        self.window_ms = int(settings.throttle_window.total_seconds() * 1000)
        self.account_limit = settings.throttle_account_limit
        self.client_limit = settings.throttle_client_limit
        self.in_flight = settings.throttle_account_in_flight
        self.client_in_flight = settings.client_password_in_flight
        self.signup_limit = settings.signup_client_limit
        self.signup_window_ms = int(settings.signup_window.total_seconds() * 1000)
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._admit_signup = redis.register_script(_ADMIT_SIGNUP)
        self._release = redis.register_script(_RELEASE)

    @staticmethod
    def _keys(email: str, client: str, scope: str = LOGIN) -> list[str]:
        account = hashlib.sha256(email.encode()).hexdigest()  # no addresses in Redis key names
        return [
            f"auth:{scope}:fail:{account}",
            f"auth:{scope}:busy:{account}",
            f"auth:{scope}:client:{client}",
            _client_in_flight_key(client),
        ]

    async def admit(self, email: str, client: str, *, scope: str = LOGIN, fail_open: bool = False) -> bool:
        """Take an attempt for this account and client (True), or raise 429 with Retry-After.

        Without Redis: 503; with `fail_open`, False instead (the attempt goes ahead uncounted).
        """
        args = [
            self.account_limit,
            self.client_limit,
            self.in_flight,
            IN_FLIGHT_TTL_MS,
            self.window_ms,
            self.client_in_flight,
        ]
        try:
            wait_ms, reason = await self._admit(keys=self._keys(email, client, scope), args=args)
        except REDIS_UNAVAILABLE as exc:
            log.error("password_throttle_unavailable", error=str(exc), fail_open=fail_open)
            if fail_open:
                return False
            raise Unavailable("Password checks are temporarily unavailable; try again shortly") from exc
        _refuse_if(int(wait_ms), int(reason), client)
        return True

    async def settle(self, email: str, client: str, *, failed: bool | None, scope: str = LOGIN) -> None:
        """Record how an admitted attempt ended: a failure counts, a success clears the account,
        `None` (no answer: hashing at capacity, an error) only gives the attempt's place back."""
        try:
            keys = self._keys(email, client, scope)
            await self._settle(keys=keys, args=[2 if failed is None else int(failed), self.window_ms])
        except REDIS_UNAVAILABLE as exc:
            log.error("password_throttle_settle_failed", error=str(exc))

    async def admit_signup(self, client: str) -> bool:
        """Take a signup for this client (True), or raise 429 with Retry-After: too many in flight
        (the same count as logins and password checks) or too many this window.

        Without Redis the signup goes ahead uncounted (False): the hashing queue still bounds the
        work, and signing up needs no other Redis state.
        """
        keys = [_client_in_flight_key(client), f"auth:signup:client:{client}"]
        args = [self.client_in_flight, IN_FLIGHT_TTL_MS, self.signup_limit, self.signup_window_ms]
        try:
            wait_ms, reason = await self._admit_signup(keys=keys, args=args)
        except REDIS_UNAVAILABLE as exc:
            log.error("signup_throttle_unavailable", error=str(exc))
            return False
        _refuse_if(int(wait_ms), int(reason), client)
        return True

    async def signup_done(self, client: str) -> None:
        try:
            await self._release(keys=[_client_in_flight_key(client)])
        except REDIS_UNAVAILABLE as exc:
            log.error("signup_throttle_release_failed", error=str(exc))


def _refuse_if(wait_ms: int, reason: int, client: str) -> None:
    if wait_ms:
        log.warning("password_throttled", client=client, reason=reason)
        raise TooManyRequests(_REFUSALS[reason], math.ceil(wait_ms / 1000))
