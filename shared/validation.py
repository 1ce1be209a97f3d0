"""Patterns for request text, shared by the services: each means the same to msgspec (Python `re`)
and to readers of the OpenAPI document (JSON Schema patterns are ECMA-262)."""

from __future__ import annotations

import re


def full_match(body: str) -> str:
    """A pattern that `body` must match from the first character to the last.

    msgspec applies patterns with `re.search`, and Python's `$` also matches just before a final
    newline, so `^[a-z]+$` accepts "x\\n". `\\Z` is not ECMA-262; `$(?!\\n)` is the true end in both.
    """
    return f"^(?:{body})$(?!\\n)"


# PostgreSQL's text type cannot hold U+0000 (asyncpg raises), so no text that is stored or queried
# may contain it, on either engine. (A newline is allowed here, so Python's `$` is harmless.)
NO_NUL = r"^[^\x00]*$"


# What each pattern means, for error messages: a client is told "lowercase letters, digits and
# hyphens", never shown a Python regex (msgspec's message names the pattern itself).
_MEANINGS: dict[str, str] = {NO_NUL: "text without the character U+0000"}
_REGEX_IN_MESSAGE = re.compile(r"matching regex '(.*?)'(?= - at |$)")


def described(pattern: str, meaning: str) -> str:
    """Register what `pattern` means in words; returns the pattern."""
    _MEANINGS[pattern] = meaning
    return pattern


def readable(message: str) -> str:
    """`message` with any "matching regex '...'" replaced by what the pattern means."""

    def words(found: re.Match[str]) -> str:
        pattern = found.group(1).encode().decode("unicode_escape")  # msgspec shows the repr
        return f"made of {_MEANINGS[pattern]}" if pattern in _MEANINGS else "in the documented format"

    return _REGEX_IN_MESSAGE.sub(words, message)
