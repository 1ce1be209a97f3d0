"""The gateway's OpenAPI document: every public route, nothing internal, and schemathesis agrees with it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from gateway.routes import ENDPOINTS
from shared.version import VERSION
from tests.support.http import Client
from tests.support.schemathesis import CONFORMANCE, run_schemathesis
from tests.support.system import System
from tests.support.users import signup

pytestmark = pytest.mark.e2e

# Operations that end the caller's own session: fuzzed separately, so the main run keeps its token.
ENDS_SESSION = {
    ("post", "/api/auth/logout"),
    ("delete", "/api/auth/sessions/{id}"),
    ("delete", "/api/users/me"),
}
CHECKS = CONFORMANCE


def _template(path: str) -> str:
    return "/".join("{id}" if p.startswith("{") else p for p in path.split("/"))


async def _document(http: Client, system: System) -> dict[str, Any]:
    reply = await http("GET", f"{system.url}/schema/openapi.json")
    assert reply.status == 200
    return reply.json()  # type: ignore[no-any-return]


async def test_document_lists_every_public_route_and_nothing_else(http: Client, system: System) -> None:
    doc = await _document(http, system)
    assert doc["openapi"].startswith("3.1")
    listed = {(m.upper(), _template(p)) for p, item in doc["paths"].items() for m in item}
    assert listed == {(ep.method, ep.template) for ep in ENDPOINTS}
    assert doc["info"]["version"] == VERSION
    assert not [p for p in doc["paths"] if not p.startswith("/api/")]
    assert (
        not {"ValidateSessionBody", "ValidatedSession", "ExistingUsersBody"}
        & doc["components"]["schemas"].keys()
    )
    for path, item in doc["paths"].items():
        for op in item.values():
            assert "X-Request-Id" in op["responses"]["default"]["headers"], path
    html = await http("GET", f"{system.url}/schema")
    assert html.status == 200
    assert html.headers["Content-Type"].startswith("text/html")
    assert b"swagger" in html.body.lower()


class _Assets(HTMLParser):
    """Every URL a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


ASSET_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".png": ("image/png",),
}


async def test_interactive_docs_load_every_asset_from_the_gateway_itself(
    http: Client, system: System
) -> None:
    """/schema works with the network cut: Swagger UI's files come from the gateway, not a CDN."""
    page = await http("GET", f"{system.url}/schema")
    assert page.status == 200
    html = page.body.decode()
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    parser = _Assets()
    parser.feed(html)
    names = {url.rsplit("/", 1)[-1] for url in parser.urls}
    assert {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"} <= names
    for url in parser.urls:
        assert url.startswith("/"), url
        asset = await http("GET", f"{system.url}{url}")
        assert asset.status == 200, url
        content_type = asset.headers["Content-Type"].split(";")[0]
        assert content_type in ASSET_TYPES[url[url.rindex(".") :]], (url, content_type)
        assert len(asset.body) > 0
    bundle = await http("GET", f"{system.url}/schema/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.body


def _schemathesis(url: str, token: str, operation_ids: list[str], *, include: bool, examples: int) -> None:
    run_schemathesis(
        url,
        checks=CHECKS,
        phases=["examples", "coverage", "fuzzing"],
        examples=examples,
        seed=1,
        headers=[f"Authorization: Bearer {token}"],
        include=operation_ids if include else (),
        exclude=() if include else operation_ids,
        timeout=300,
    )


@pytest.mark.slow
async def test_schemathesis_finds_no_server_error_and_no_contradiction(http: Client, system: System) -> None:
    doc = await _document(http, system)
    ending = [
        op["operationId"]
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if (method, _template(path)) in ENDS_SESSION
    ]
    assert len(ending) == len(ENDS_SESSION)
    user = await signup(http, system.url)
    await user.canvas(isPublic=True)
    _schemathesis(system.url, user.token, ending, include=False, examples=12)
    other = await signup(http, system.url)
    _schemathesis(system.url, other.token, ending, include=True, examples=5)
