"""Full-text search over a canvas's title, description and tags (`q=` on the listings).

What a word is (the same for the index, the query and the tests' oracle):
- a **word** is a maximal run of letters and digits: the characters Python's `str.isalnum()`
  accepts (Unicode categories L* and N*); everything else (spaces, punctuation, `_`, `-`, `.`, `@`,
  symbols, emoji) separates words. `foo_bar-baz.qux` is the four words `foo bar baz qux`.
- words compare case-insensitively by Unicode case folding (`str.casefold()`: `Straße` = `STRASSE`);
  accents are kept (`café` is not `cafe`).
- a canvas matches `q` when every word of `q` is one of the words of its title, description or tags,
  the last word of `q` as a prefix (`pyth` finds `Python`); a `q` without any word matches everything.

The words are computed here, in Python, and stored with the row (`canvas.search_text`: the distinct
folded words, space-separated) by the same statement that writes the title, description or tags.
Each engine indexes those words verbatim, so neither engine's own tokenizer decides what a word is:
- PostgreSQL: a GIN index on `array_to_tsvector(string_to_array(search_text, ' '))`, queried with a
  tsquery built from quoted lexemes (`'word' & 'pre':*`) and cast, not parsed. The default text-search
  parser would read `a.b` as a host name and `1.5` as a number, and `to_tsvector` with a language would
  stem `tests` to `test`; the lexemes are stored as given, never stemmed (like the `simple` configuration).
- SQLite: an FTS5 table (`canvas_fts`) with the `ascii` tokenizer, which splits on ASCII spaces and
  punctuation only (our words hold none) and keeps every non-ASCII character, filled by triggers on
  `canvas`; queried with quoted strings (`"word" AND "pre" *`).
User input never reaches either query language unquoted: each word is quoted and escaped, so no `q`
can inject an operator or make a query fail.

A folded word is indexed by at most its first KEY_MAX_BYTES bytes of UTF-8 (PostgreSQL refuses a
lexeme over 2047 bytes). That loses no match: `q` has at most 200 characters and one character folds
to at most 6 bytes, so a word of `q` never reaches that length, and a prefix or an equality with a
longer word is decided within it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

Q_MAX = 200  # characters of `q`
KEY_MAX_BYTES = Q_MAX * 6  # the longest folded word a `q` can hold, in UTF-8 bytes
_WORD = re.compile(r"[^\W_]+")  # \w is str.isalnum() plus "_"


def words(text: str) -> list[str]:
    """The folded words of `text`, in order, duplicates kept."""
    return [_key(match.group()) for match in _WORD.finditer(text)]


def _key(word: str) -> str:
    folded = word.casefold()
    if len(folded) * 4 <= KEY_MAX_BYTES:  # fast path: short enough whatever its characters
        return folded
    return folded.encode()[:KEY_MAX_BYTES].decode(errors="ignore")


def index_text(title: str, description: str, tags: Iterable[str]) -> str:
    """`canvas.search_text`: the distinct words of the title, description and tags, space-separated."""
    found = dict.fromkeys(words(title))
    found.update(dict.fromkeys(words(description)))
    for tag in tags:
        found.update(dict.fromkeys(words(tag)))
    return " ".join(found)


def tsquery(terms: list[str]) -> str:
    """PostgreSQL tsquery text: every term quoted as one lexeme, the last one as a prefix."""
    quoted = ["'" + term.replace("\\", "\\\\").replace("'", "''") + "'" for term in terms]
    quoted[-1] += ":*"
    return " & ".join(quoted)


def fts5_match(terms: list[str]) -> str:
    """SQLite FTS5 MATCH text: every term a quoted string, the last one as a prefix."""
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    quoted[-1] += " *"
    return " AND ".join(quoted)
