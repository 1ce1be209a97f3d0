"""shared/errors.py maps by type, never by message text."""

from __future__ import annotations

from litestar.exceptions import ValidationException

from shared.errors import _from_http


def test_a_refused_value_is_422_whatever_its_text_says() -> None:
    # A missing parameter's detail quotes the request's path and query, which a client chooses.
    for detail in ("Missing required query parameter 'x' for path /api/canvases?q=JSON", "decode me"):
        assert _from_http(ValidationException(detail)).status_code == 422
