"""HTTP routes of the auth service: parse, call the service modules, shape the answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from msgspec import UNSET

from services.auth import recovery, users
from services.auth.passwords import Passwords
from services.auth.recovery import MailRequestLimit
from services.auth.schemas import (
    AuthOut,
    ChangePasswordBody,
    DeleteMeBody,
    EmailVerificationConfirmBody,
    ExistingUsers,
    ExistingUsersBody,
    LoginBody,
    PasswordResetBody,
    PasswordResetConfirmBody,
    SessionList,
    SignupBody,
    UpdateMeBody,
    UserOut,
    ValidatedSession,
    ValidateSessionBody,
    session_out,
    user_out,
)
from services.auth.sessions import SessionService
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle
from shared import internal_auth
from shared.app import from_container
from shared.auth_middleware import EXCLUDE_FROM_AUTH, AnyRequest, caller_of
from shared.caller import SIGNED_IN_ONLY, CallerDep
from shared.errors import INVALID, NO_SESSION, Forbidden, NotFound, Unauthorized
from shared.errors import problem_responses as errors
from shared.json_body import StrictBody
from shared.timeutil import rfc3339
from shared.tokens import session_id_of

# Tells the gateway that the caller's own session ended, so it clears the cookie (docs/api.md, "Internal").
SESSION_ENDED = {"X-Session-Ended": "1"}


def client_address(request: AnyRequest) -> str:
    """The client as the gateway saw it; the peer address for direct calls."""
    return caller_of(request).ip or (request.client.host if request.client else "unknown")


Sessions = NamedDependency[SessionService]
Throttle = NamedDependency[LoginThrottle]
MailLimit = NamedDependency[MailRequestLimit]
Config = NamedDependency[AuthSettings]
PasswordsDep = NamedDependency[Passwords]

DEPENDENCIES = from_container(
    sessions="sessions",
    throttle="throttle",
    mail_limit="mail_limit",
    config="settings",
    passwords="passwords",
)


async def _signed_in(user: dict[str, Any], sessions: SessionService, request: AnyRequest) -> AuthOut:
    agent = request.headers.get(internal_auth.CLIENT_USER_AGENT)
    token, info = await sessions.create(str(user["id"]), user_agent=agent, ip=client_address(request))
    return AuthOut(user=user_out(user), token=token, expires_at=rfc3339(info.expires_at))


WRONG_PASSWORD = {403: "The password given is wrong"}
BAD_TOKEN = {400: "Unknown, used, expired or superseded token (one answer for all)"}
MAIL_THROTTLED = {
    429: "Too many requests from this client this hour; see Retry-After",
    503: "Request counting is unavailable; see Retry-After",
}
# Wrong current passwords count with failed logins (throttle.py).
PASSWORD_THROTTLED = {
    429: "Too many failed password attempts, or password checks in flight, for this account or client;"
    " see Retry-After"
}
# Every route that hashes a password: the hashing queue is bounded (passwords.py).
PASSWORD_BUSY = {503: "Password hashing is at capacity; see Retry-After"}
SIGNUPS_THROTTLED = {429: "Too many signups, or password checks in flight, from this client; see Retry-After"}


class AuthController(Controller):
    path = "/api/auth"
    tags = ["auth"]

    @post(
        "/signup",
        status_code=201,
        responses=errors({409: "The email is taken", **INVALID, **PASSWORD_BUSY, **SIGNUPS_THROTTLED}),
        dto=StrictBody[SignupBody],
        return_dto=None,
    )
    async def signup(
        self,
        *,
        request: AnyRequest,
        data: JSONBody[SignupBody],
        sessions: Sessions,
        throttle: Throttle,
        config: Config,
        passwords: PasswordsDep,
    ) -> AuthOut:
        """Create an account and sign in: the user, the session token and when it expires. A
        verification mail goes to the address."""
        name = None if data.name is UNSET else data.name
        user = await users.signup(
            data.email,
            data.password,
            name,
            client=client_address(request),
            throttle=throttle,
            settings=config,
            passwords=passwords,
        )
        return await _signed_in(user, sessions, request)

    @post(
        "/login",
        status_code=200,
        responses=errors(
            {
                401: "Unknown email or wrong password (one answer for both)",
                **INVALID,
                429: "Too many failed logins for this account or client; see Retry-After",
                503: "Login throttling is unavailable, or password hashing is at capacity; see Retry-After",
            }
        ),
        dto=StrictBody[LoginBody],
        return_dto=None,
    )
    async def login(
        self,
        request: AnyRequest,
        data: JSONBody[LoginBody],
        sessions: Sessions,
        throttle: Throttle,
        passwords: PasswordsDep,
    ) -> AuthOut:
        """Sign in with email and password: a new session."""
        client = client_address(request)
        user = await users.login(
            data.email, data.password, client=client, throttle=throttle, passwords=passwords
        )
        return await _signed_in(user, sessions, request)

    @post("/logout", status_code=204, opt=SIGNED_IN_ONLY, responses=errors(NO_SESSION))
    async def logout(self, caller: CallerDep, sessions: Sessions) -> Response[None]:
        """End the current session everywhere at once."""
        await sessions.revoke(caller.user_id, caller.session_id)
        return Response(None, status_code=204, headers=SESSION_ENDED)

    @get("/sessions", opt=SIGNED_IN_ONLY, responses=errors(NO_SESSION))
    async def list_sessions(self, caller: CallerDep, sessions: Sessions) -> SessionList:
        """The caller's live sessions, newest first."""
        items = await sessions.list_for(caller.user_id)
        return SessionList(items=[session_out(info, caller.session_id) for info in items])

    @delete(
        "/sessions/{session_id:str}",
        status_code=204,
        opt=SIGNED_IN_ONLY,
        responses=errors({**NO_SESSION, 404: "Not one of the caller's sessions"}),
    )
    async def revoke_session(
        self, session_id: FromPath[str], caller: CallerDep, sessions: Sessions
    ) -> Response[None]:
        """Revoke one of the caller's sessions; revoking the current one is a logout."""
        if not await sessions.revoke(caller.user_id, session_id):
            raise NotFound("No such session")
        headers = SESSION_ENDED if session_id == caller.session_id else {}
        return Response(None, status_code=204, headers=headers)

    @delete("/sessions", status_code=204, opt=SIGNED_IN_ONLY, responses=errors(NO_SESSION))
    async def revoke_other_sessions(self, caller: CallerDep, sessions: Sessions) -> None:
        """Revoke every session of the caller but the current one."""
        await sessions.revoke_all(caller.user_id, keep=caller.session_id)

    @post(
        "/password-reset",
        status_code=202,
        responses=errors({**INVALID, **MAIL_THROTTLED}),
        dto=StrictBody[PasswordResetBody],
        return_dto=None,
    )
    async def request_password_reset(
        self, request: AnyRequest, data: JSONBody[PasswordResetBody], mail_limit: MailLimit, config: Config
    ) -> None:
        """Mail a password-reset link if an account has this email; the same answer either way."""
        await recovery.request_reset(
            data.email, client=client_address(request), limit=mail_limit, settings=config
        )

    @post(
        "/password-reset/confirm",
        status_code=204,
        responses=errors({**BAD_TOKEN, **INVALID, **PASSWORD_BUSY}),
        dto=StrictBody[PasswordResetConfirmBody],
        return_dto=None,
    )
    async def confirm_password_reset(
        self, data: JSONBody[PasswordResetConfirmBody], sessions: Sessions, passwords: PasswordsDep
    ) -> None:
        """Set a new password with a reset token; every session of the account is revoked."""
        await recovery.confirm_reset(data.token, data.new_password, sessions=sessions, passwords=passwords)

    @post(
        "/email-verification/confirm",
        status_code=200,
        responses=errors({**BAD_TOKEN, **INVALID}),
        dto=StrictBody[EmailVerificationConfirmBody],
        return_dto=None,
    )
    async def confirm_email_verification(self, data: JSONBody[EmailVerificationConfirmBody]) -> UserOut:
        """Mark the address a verification token was sent to as verified."""
        return user_out(await recovery.confirm_verification(data.token))


class UsersController(Controller):
    path = "/api/users/me"
    tags = ["users"]
    opt = SIGNED_IN_ONLY

    @get(responses=errors(NO_SESSION))
    async def me(self, caller: CallerDep) -> UserOut:
        """The caller's account."""
        return user_out(await users.current(caller.user_id))

    @patch(
        responses=errors(
            {
                **NO_SESSION,
                403: "Changing the email needs the right currentPassword",
                409: "The email is taken",
                **INVALID,
                **PASSWORD_THROTTLED,
                **PASSWORD_BUSY,
            }
        ),
        dto=StrictBody[UpdateMeBody],
        return_dto=None,
    )
    async def update_me(
        self,
        *,
        request: AnyRequest,
        data: JSONBody[UpdateMeBody],
        caller: CallerDep,
        throttle: Throttle,
        config: Config,
        passwords: PasswordsDep,
    ) -> UserOut:
        """Change the name and/or the email (the email needs `currentPassword`)."""
        user = await users.update_profile(
            caller.user_id,
            data,
            client=client_address(request),
            throttle=throttle,
            settings=config,
            passwords=passwords,
        )
        return user_out(user)

    @post(
        "/password",
        status_code=204,
        responses=errors({**NO_SESSION, **WRONG_PASSWORD, **INVALID, **PASSWORD_THROTTLED, **PASSWORD_BUSY}),
        dto=StrictBody[ChangePasswordBody],
        return_dto=None,
    )
    async def change_password(
        self,
        *,
        request: AnyRequest,
        data: JSONBody[ChangePasswordBody],
        caller: CallerDep,
        sessions: Sessions,
        throttle: Throttle,
        passwords: PasswordsDep,
    ) -> None:
        """Change the password; every other session of the caller is revoked."""
        await users.change_password(
            caller.user_id,
            data.current_password,
            data.new_password,
            keep_session=caller.session_id,
            sessions=sessions,
            client=client_address(request),
            throttle=throttle,
            passwords=passwords,
        )

    @post(
        "/email-verification",
        status_code=202,
        responses=errors({**NO_SESSION, 409: "The email address is already verified", **MAIL_THROTTLED}),
    )
    async def resend_email_verification(
        self, request: AnyRequest, caller: CallerDep, mail_limit: MailLimit, config: Config
    ) -> None:
        """Mail a new verification link to the caller's address."""
        await recovery.resend_verification(
            caller.user_id, client=client_address(request), limit=mail_limit, settings=config
        )

    @delete(
        status_code=204,
        responses=errors({**NO_SESSION, **WRONG_PASSWORD, **INVALID, **PASSWORD_THROTTLED, **PASSWORD_BUSY}),
        dto=StrictBody[DeleteMeBody],
        return_dto=None,
    )
    async def delete_me(
        self,
        *,
        request: AnyRequest,
        data: JSONBody[DeleteMeBody],
        caller: CallerDep,
        sessions: Sessions,
        throttle: Throttle,
        passwords: PasswordsDep,
    ) -> Response[None]:
        """Delete the account and all its sessions; its canvases follow through `user.deleted`."""
        await users.delete_account(
            caller.user_id,
            data.password,
            sessions=sessions,
            client=client_address(request),
            throttle=throttle,
            passwords=passwords,
        )
        return Response(None, status_code=204, headers=SESSION_ENDED)


# Which service owns a public path (the gateway's route table, by prefix); canvas paths first.
_OWNERS = (
    ("/api/users/me/canvases", "canvas"),
    ("/api/canvases", "canvas"),
    ("/api/auth", "auth"),
    ("/api/users", "auth"),
)


def forward_auth_audience(uri: str | None) -> str | None:
    """The service a forward-auth credential is for: the owner of the original request's path."""
    if not uri:
        return None
    path = urlsplit(uri).path
    if ".." in path.split("/"):
        return None
    for prefix, owner in _OWNERS:
        if path == prefix or path.startswith(prefix + "/"):
            return owner
    return None


class InternalController(Controller):
    """Service-to-service routes; the gateway never forwards /internal."""

    path = "/internal"
    tags = ["internal"]

    @post(
        "/sessions/validate",
        status_code=200,
        responses=errors({404: "Unknown or expired session"}),
        dto=StrictBody[ValidateSessionBody],
        return_dto=None,
    )
    async def validate_session(
        self, data: JSONBody[ValidateSessionBody], sessions: Sessions
    ) -> ValidatedSession:
        """Validate a session id (sliding its expiry when due) for the gateway."""
        found = await sessions.validate(data.session_id)
        if found is None:
            raise NotFound("No such session, or it has expired")
        info, renewed = found
        return ValidatedSession(
            user_id=info.user_id, session_id=info.id, expires_at=rfc3339(info.expires_at), renewed=renewed
        )

    @get("/forward-auth", status_code=204, include_in_schema=False, opt={EXCLUDE_FROM_AUTH: True})
    async def forward_auth(self, request: AnyRequest, sessions: Sessions, config: Config) -> Response[None]:
        """nginx/Traefik-style forward auth (`auth_request`): a valid Bearer token in, the signed
        internal credential out in `X-Internal-Auth`. Open without a credential because the proxy
        cannot sign one; it mints a credential only for a live session, for that session's user, and
        only for what the gateway's proxy may do: the public `/api` routes of the one service that
        owns the original request's path (`X-Forwarded-Uri` or `X-Original-URI`; 403 without one
        or for a path no service owns)."""
        audience = forward_auth_audience(
            request.headers.get("x-forwarded-uri") or request.headers.get("x-original-uri")
        )
        if audience is None:
            raise Forbidden("X-Forwarded-Uri or X-Original-URI must name a public /api path")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        found = (
            await sessions.validate(session_id_of(token)) if scheme.lower() == "bearer" and token else None
        )
        if found is None:
            raise Unauthorized("Invalid or expired session")
        info, _ = found
        credential = internal_auth.sign(
            config.secret,
            audience=audience,
            api_only=True,
            user_id=info.user_id,
            session_id=info.id,
            request_id=request.headers.get("x-request-id"),
        )
        return Response(None, status_code=204, headers={internal_auth.HEADER: credential})

    @post(
        "/users/existing",
        status_code=200,
        responses=errors(INVALID),
        dto=StrictBody[ExistingUsersBody],
        return_dto=None,
    )
    async def existing_users(self, data: JSONBody[ExistingUsersBody]) -> ExistingUsers:
        """Which of these user ids still exist (for the canvas service's reconciliation)."""
        return ExistingUsers(existing=await users.existing(data.user_ids))
