"""HTTP routes of the canvas service (docs/api.md, "Canvases"); the logic lives in canvases.py."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, delete, get, head, patch, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from services.canvas import canvases, search
from services.canvas.canvases import Listing, Tagged
from services.canvas.cursors import CursorCodec
from services.canvas.etags import IfMatch
from services.canvas.read_cache import ReadCache
from services.canvas.schemas import (
    PAGE_DEFAULT,
    PAGE_MAX,
    TAG_MAX,
    TYPE_MAX,
    TYPE_PATTERN,
    Canvas,
    CanvasCreate,
    CanvasPage,
    CanvasUpdate,
)
from services.canvas.view_counter import ViewCounter
from shared.app import from_container
from shared.auth_middleware import AnyRequest
from shared.caller import SIGNED_IN_ONLY, Caller, CallerDep, MaybeCallerDep
from shared.errors import INVALID, NO_SESSION, Invalid
from shared.errors import problem_responses as errors
from shared.json_body import StrictBody
from shared.validation import NO_NUL

Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_MAX, description="page size")]
Cursor = Annotated[str | None, QueryParameter(description="`nextCursor` of the previous page")]
TypeFilter = Annotated[
    str | None,
    QueryParameter(name="type", min_length=1, max_length=TYPE_MAX, pattern=TYPE_PATTERN),
]
TagFilter = Annotated[str | None, QueryParameter(min_length=1, max_length=TAG_MAX, pattern=NO_NUL)]
SearchFilter = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=search.Q_MAX,
        description="words that must all appear in the title, description or tags (case-insensitive;"
        " the last word may be a prefix); a word is a run of letters and digits",
    ),
]
UserFilter = Annotated[str | None, QueryParameter(name="userId", description="the owner's user id (a UUID)")]
CanvasId = FromPath[uuid.UUID]
# Documents the header; the handlers read every If-Match line from the request (one list, RFC 9110).
IfMatchHeader = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        description="an ETag of this canvas from an earlier answer (or `*`): the change is made only if"
        " the canvas still has it, else 412 and nothing changes",
    ),
]
ETAG = [
    ResponseHeader(
        name="ETag",
        description="strong; changes with every change of the canvas (not with its views)",
        documentation_only=True,
    )
]
PRECONDITION = {412: "If-Match names none of the canvas's current ETag"}
NOT_FOUND = {404: "No such canvas, or it is private and not the caller's"}
NOT_OWNER = {403: "Only the owner may change this canvas"}
BAD_QUERY = {
    400: "Invalid cursor: malformed, tampered with, or issued for other filters",
    422: "Invalid query parameter; the parameter is named",
}
VIEWS_DOWN = {503: "The view counter (Redis) is unavailable; see Retry-After"}
Views = NamedDependency[ViewCounter]
Cache = NamedDependency[ReadCache]
Cursors = NamedDependency[CursorCodec]


def viewer(caller: Caller | None) -> uuid.UUID | None:
    """Who reads: the signed-in user, or None for an anonymous caller."""
    return None if caller is None else caller.user


def parse_user_filter(user_id: str | None) -> uuid.UUID | None:
    # Parsed here rather than by Litestar so that the error names the query parameter (`userId`).
    try:
        return None if user_id is None else uuid.UUID(user_id)
    except ValueError as exc:
        raise Invalid("userId", "must be a UUID") from exc


def tagged(answer: Tagged, status: int = 200) -> Response[Canvas]:
    return Response(answer.canvas, status_code=status, headers={"ETag": answer.etag})


def if_match_of(request: AnyRequest) -> IfMatch | None:
    return IfMatch.parse(request.headers.getall("if-match", []))


DEPENDENCIES = from_container(views="views", cache="cache", cursors="cursors")


class CanvasController(Controller):
    path = "/api/canvases"
    tags = ["canvases"]

    @post(
        "/",
        dto=StrictBody[CanvasCreate],
        return_dto=None,
        opt=SIGNED_IN_ONLY,
        response_headers=ETAG,
        responses=errors({**NO_SESSION, 403: "The caller's account has been deleted", **INVALID}),
    )
    async def create_canvas(self, caller: CallerDep, data: JSONBody[CanvasCreate]) -> Response[Canvas]:
        """Create a canvas owned by the caller."""
        return tagged(await canvases.create(caller.user, data), 201)

    @get("/", responses=errors({**BAD_QUERY, **VIEWS_DOWN}))
    async def list_public(
        self,
        *,
        views: Views,
        cursors: Cursors,
        type: TypeFilter = None,
        tag: TagFilter = None,
        user_id: UserFilter = None,
        q: SearchFilter = None,
        limit: Limit = PAGE_DEFAULT,
        cursor: Cursor = None,
    ) -> CanvasPage:
        """Public canvases, newest first."""
        listing = Listing(public_only=True, owner=parse_user_filter(user_id), type=type, tag=tag, q=q)
        return await canvases.list_canvases(views, cursors, listing, limit=limit, cursor=cursor)

    @get("/{canvas_id:uuid}", response_headers=ETAG, responses=errors({**NOT_FOUND, **VIEWS_DOWN}))
    async def read_canvas(
        self, maybe_caller: MaybeCallerDep, cache: Cache, canvas_id: CanvasId
    ) -> Response[Canvas]:
        """The canvas; counts one view, included in the returned `views`."""
        return tagged(await canvases.read(cache, canvas_id, viewer(maybe_caller)))

    @head("/{canvas_id:uuid}", response_headers=ETAG, responses=errors(NOT_FOUND))
    async def head_canvas(self, maybe_caller: MaybeCallerDep, canvas_id: CanvasId) -> Response[None]:
        """Whether the canvas is readable; counts no view."""
        return Response(None, headers={"ETag": await canvases.check_visible(canvas_id, viewer(maybe_caller))})

    @patch(
        "/{canvas_id:uuid}",
        dto=StrictBody[CanvasUpdate],
        return_dto=None,
        opt=SIGNED_IN_ONLY,
        response_headers=ETAG,
        responses=errors({**NO_SESSION, **NOT_OWNER, **NOT_FOUND, **PRECONDITION, **INVALID}),
    )
    async def update_canvas(
        self,
        *,
        request: AnyRequest,
        caller: CallerDep,
        cache: Cache,
        canvas_id: CanvasId,
        data: JSONBody[CanvasUpdate],
        if_match: IfMatchHeader = None,
    ) -> Response[Canvas]:
        """Change the caller's canvas; omitted fields are left unchanged. With `If-Match`, only if
        the canvas still has that ETag (412 otherwise)."""
        return tagged(await canvases.update(cache, canvas_id, caller.user, data, if_match_of(request)))

    @delete(
        "/{canvas_id:uuid}",
        opt=SIGNED_IN_ONLY,
        responses=errors({**NO_SESSION, **NOT_OWNER, **NOT_FOUND, **PRECONDITION}),
    )
    async def delete_canvas(
        self,
        *,
        request: AnyRequest,
        caller: CallerDep,
        cache: Cache,
        canvas_id: CanvasId,
        if_match: IfMatchHeader = None,
    ) -> None:
        """Delete the caller's canvas. With `If-Match`, only if it still has that ETag (412 otherwise)."""
        await canvases.delete(cache, canvas_id, caller.user, if_match_of(request))


class MyCanvasController(Controller):
    path = "/api/users/me/canvases"
    tags = ["canvases"]
    opt = SIGNED_IN_ONLY

    @get("/", responses=errors({**NO_SESSION, **BAD_QUERY, **VIEWS_DOWN}))
    async def list_mine(
        self,
        *,
        caller: CallerDep,
        views: Views,
        cursors: Cursors,
        type: TypeFilter = None,
        tag: TagFilter = None,
        q: SearchFilter = None,
        limit: Limit = PAGE_DEFAULT,
        cursor: Cursor = None,
    ) -> CanvasPage:
        """All of the caller's canvases, private ones included, newest first."""
        listing = Listing(public_only=False, owner=caller.user, type=type, tag=tag, q=q)
        return await canvases.list_canvases(views, cursors, listing, limit=limit, cursor=cursor)
