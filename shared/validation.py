"""Patterns for request text, shared by the services: each means the same to msgspec (Python `re`)
and to readers of the OpenAPI document (JSON Schema patterns are ECMA-262)."""

from __future__ import annotations


def full_match(body: str) -> str:
    """A pattern that `body` must match from the first character to the last.

    msgspec applies patterns with `re.search`, and Python's `$` also matches just before a final
    newline, so `^[a-z]+$` accepts "x\\n". `\\Z` is not ECMA-262; `$(?!\\n)` is the true end in both.
    """
    return f"^(?:{body})$(?!\\n)"


# PostgreSQL's text type cannot hold U+0000 (asyncpg raises), so no text that is stored or queried
# may contain it, on either engine. (A newline is allowed here, so Python's `$` is harmless.)
NO_NUL = r"^[^\x00]*$"
