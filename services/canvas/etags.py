"""Strong ETags of canvases and the `If-Match` precondition (RFC 9110 8.8.3, 13.1.1).

A canvas's ETag is `"<id>.<version>"`: `canvas.version` starts at 1 and the UPDATE that changes the
canvas adds 1 in the same statement, so the tag changes with every change of its content and never
with its views. The id makes a tag of one canvas never match another canvas.

`If-Match` is parsed by hand: it is one line of grammar (`*` or a comma-separated list of entity
tags) and Litestar has no parser for it. Weak tags (`W/"..."`) never match: If-Match compares
strongly. Anything that is not an entity tag is ignored, so a malformed header matches nothing (412).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from shared.errors import AppError

_ENTITY_TAG = re.compile(r'\s*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(?:,|$)')


def etag(canvas_id: uuid.UUID | str, version: int) -> str:
    return f'"{canvas_id}.{version}"'


class PreconditionFailed(AppError):
    """412: the canvas changed since the client read the ETag it sent in If-Match."""

    status_code = 412

    def __init__(self) -> None:
        super().__init__("the canvas has changed: If-Match names none of its current ETag; read it again")


@dataclass(frozen=True)
class IfMatch:
    """A request's If-Match: `any` for `*`, else the strong tags it lists."""

    any: bool
    tags: frozenset[str]

    @classmethod
    def parse(cls, values: list[str]) -> IfMatch | None:
        """None without the header; several header lines are one list (RFC 9110 5.3)."""
        if not values:
            return None
        joined = ", ".join(values)
        if joined.strip() == "*":
            return cls(any=True, tags=frozenset())
        tags = {f'"{opaque}"' for weak, opaque in _ENTITY_TAG.findall(joined) if not weak}
        return cls(any=False, tags=frozenset(tags))

    def versions(self, canvas_id: uuid.UUID | str) -> list[int]:
        """The versions of this canvas the header names (empty: none can match)."""
        prefix = f'"{canvas_id}.'
        found = []
        for tag in self.tags:
            number = tag[len(prefix) : -1] if tag.startswith(prefix) else ""
            if number.isascii() and number.isdigit() and len(number) < 19:
                found.append(int(number))
        return sorted(found)

    def check(self, canvas_id: uuid.UUID | str, version: int) -> None:
        if not self.any and version not in self.versions(canvas_id):
            raise PreconditionFailed
