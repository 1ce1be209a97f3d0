"""Canvas objects on the wire (docs/api.md, "Objects"), with the contract's field limits.

The limits are constants of the public contract (docs/api.md states them and the OpenAPI declares
them), not deployment settings: the wire types are built once from them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.params import KwargDefinition
from msgspec import UNSET, Meta, UnsetType

from shared.validation import NO_NUL, described, full_match

TYPE_PATTERN = described(full_match("[a-z0-9-]+"), "lowercase letters, digits and hyphens")

# Lengths in characters, `code` in UTF-8 bytes; `limit` of a listing page.
TITLE_MAX = 200
DESCRIPTION_MAX = 2000
CODE_MAX_BYTES = 1024 * 1024
TAGS_MAX = 20
TAG_MAX = 32
TYPE_MAX = 32
PAGE_DEFAULT = 20
PAGE_MAX = 100

Title = Annotated[str, Meta(min_length=1, max_length=TITLE_MAX, pattern=NO_NUL)]
CanvasType = Annotated[str, Meta(min_length=1, max_length=TYPE_MAX, pattern=TYPE_PATTERN)]
# The byte limit of `code` is checked in canvases.py; a string over it in characters is over it in bytes.
Code = Annotated[
    str,
    Meta(
        max_length=CODE_MAX_BYTES,
        pattern=NO_NUL,
        description=f"at most {CODE_MAX_BYTES} bytes in UTF-8",
    ),
]
Description = Annotated[str, Meta(max_length=DESCRIPTION_MAX, pattern=NO_NUL)]
# Litestar's OpenAPI generator reads the constraints of a list's items from a KwargDefinition only
# (it ignores msgspec's Meta there), so they are stated for both.
Tag = Annotated[
    str,
    Meta(min_length=1, max_length=TAG_MAX, pattern=NO_NUL),
    KwargDefinition(min_length=1, max_length=TAG_MAX, pattern=NO_NUL),
]
Tags = Annotated[list[Tag], Meta(max_length=TAGS_MAX)]


class CanvasCreate(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    title: Title
    type: CanvasType
    code: Code
    description: Description = ""
    tags: Tags = msgspec.field(default_factory=list)
    is_public: bool = False


class CanvasUpdate(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Every field optional; an omitted field is left unchanged (null is not accepted)."""

    title: Title | UnsetType = UNSET
    type: CanvasType | UnsetType = UNSET
    code: Code | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    is_public: bool | UnsetType = UNSET


class CanvasSummary(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    title: str
    type: str
    description: str
    tags: list[str]
    user_id: str
    is_public: bool
    views: int
    created_at: str
    updated_at: str


class Canvas(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    title: str
    type: str
    code: str
    description: str
    tags: list[str]
    user_id: str
    is_public: bool
    views: int
    created_at: str
    updated_at: str


class CanvasPage(msgspec.Struct, rename="camel", kw_only=True):
    items: list[CanvasSummary]
    next_cursor: str | None
