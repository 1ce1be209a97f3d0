"""One OpenAPI 3.1 document for the public API, merged from the services' own Litestar schemas.

Why merged rather than declared here: each service generates its schema from the very Structs and
handlers that serve the requests, so the merged document cannot drift from what they do, and the
gateway imports no service code. The gateway keeps only the paths it routes (no /internal), and adds
what it does itself: the two ways to authenticate, and the error answers produced by the gateway or by
the error mapper every service shares (all errors are application/problem+json; X-Request-Id on every
answer). The merged document is cached for `ttl` seconds; a stale copy is served while a service
is unreachable, 503 before the first successful fetch.

The interactive docs at /schema are Swagger UI from the pinned `swagger-ui-py` package, whose
`static/` folder is served under /schema/assets by Litestar's static files router: the page loads
nothing from another host, so it works offline (Litestar's plugin alone would load it from a CDN).
"""

from __future__ import annotations

import copy
import importlib.resources
import time
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

from gateway.routes import SAFE_METHODS, Access, Endpoint, RouteTable
from gateway.upstreams import Upstream
from shared import internal_auth
from shared.errors import Unavailable
from shared.version import VERSION

SERVICE_SCHEMA_PATH = "/schema/openapi.json"
ASSETS_PATH = "/schema/assets"
# swagger-ui-py ships Swagger UI's release files (swagger-ui-bundle.js, swagger-ui.css, ...) here.
SWAGGER_UI_DIR = Path(str(importlib.resources.files("swagger_ui").joinpath("static")))
OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json"
PROBLEM_MEDIA_TYPE = "application/problem+json"

_PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "required": ["title", "status", "detail"],
}
_SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "The session token"},
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "session",
        "description": "The session token",
    },
}
_REQUEST_ID = {
    "description": "The client's X-Request-Id when well formed, else a new UUID",
    "required": True,
    "schema": {"type": "string"},
}
_RETRY_AFTER = {"description": "Seconds to wait", "required": True, "schema": {"type": "string"}}
_WWW_AUTHENTICATE = {"required": True, "schema": {"type": "string", "const": "Bearer"}}
_SET_COOKIE = {
    "description": "The `session` cookie (HttpOnly, SameSite=Lax, Path=/, Secure)",
    "required": True,
    "schema": {"type": "string"},
}


def _errors_for(endpoint: Endpoint, op: dict[str, Any]) -> dict[str, str]:
    """Error statuses this operation can answer beyond what its service declares."""
    errors = {
        "429": "Too many requests from this client",
        "502": "The owning service could not be reached",
        "503": "A dependency is unavailable",
        "504": "The owning service did not answer in time",
    }
    if endpoint.access is not Access.PUBLIC:
        errors["401"] = "No valid session (missing, malformed, expired or revoked token)"
    if endpoint.method not in SAFE_METHODS:
        errors["403"] = "Origin not allowed (CSRF), or the action is forbidden"
    if "requestBody" in op:
        errors |= {"400": "Malformed JSON", "413": "Request body too large", "422": "Invalid body"}
    if op.get("parameters"):
        errors |= {"400": "Malformed parameter", "404": "Not found", "422": "Invalid parameter"}
    return errors


def _template(path: str) -> str:
    """`/api/canvases/{canvas_id}` → `/api/canvases/{id}`, the gateway's route template."""
    return "/".join("{id}" if p.startswith("{") and p.endswith("}") else p for p in path.split("/"))


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name in renames:
                return {**node, "$ref": f"#/components/schemas/{renames[name]}"}
        return {k: _rename_refs(v, renames) for k, v in node.items()}
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        found = {ref.rsplit("/", 1)[1]} if isinstance(ref, str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _closed_bodies(schemas: dict[str, Any], paths: dict[str, Any]) -> None:
    """Request bodies refuse unknown fields (docs/api.md; every service's body Structs forbid them), which
    Litestar's schema generation leaves out: say so, so clients and fuzzers see the real contract."""
    for item in paths.values():
        for op in item.values():
            content = op.get("requestBody", {}).get("content", {})
            for name in _refs(content):
                if schemas.get(name, {}).get("type") == "object":
                    schemas[name] = {**schemas[name], "additionalProperties": False}


def _used(schemas: dict[str, Any], paths: dict[str, Any]) -> dict[str, Any]:
    """The schemas the kept paths reach: those of internal routes stay out of the public document."""
    pending, used = _refs(paths), set()
    while pending:
        name = pending.pop()
        if name in schemas and name not in used:
            used.add(name)
            pending |= _refs(schemas[name])
    return {name: schemas[name] for name in sorted(used)}


def _document_operation(endpoint: Endpoint, op: dict[str, Any]) -> dict[str, Any]:
    op = copy.deepcopy(op)
    responses: dict[str, Any] = op.setdefault("responses", {})
    for status, description in _errors_for(endpoint, op).items():
        responses.setdefault(status, {"description": description})
    responses["default"] = {"description": "Any other error (a service's own 4xx): problem details"}
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        headers["X-Request-Id"] = _REQUEST_ID
        if status == "204":
            response.pop("content", None)  # Litestar documents a body for `Response[None]`; 204 has none
        if status[0] in "45" or status == "default":
            response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        if status in ("429", "503"):
            headers["Retry-After"] = {**_RETRY_AFTER, "required": status == "429"}
        if status == "401":
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        if endpoint.starts_session and status in ("200", "201"):
            headers["Set-Cookie"] = _SET_COOKIE
    session: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"sessionCookie": []}]
    op["security"] = {Access.PUBLIC: [], Access.OPTIONAL: [{}, *session], Access.SESSION: session}[
        endpoint.access
    ]
    return op


def merge(docs: dict[str, dict[str, Any]], table: RouteTable, *, version: str = VERSION) -> dict[str, Any]:
    """The public document from each service's document (keyed by upstream name)."""
    endpoints = {(ep.template, ep.method.lower()): ep for r in table.routes for ep in r.endpoints.values()}
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {"Problem": _PROBLEM_SCHEMA}
    for service, original in docs.items():
        own = original.get("components", {}).get("schemas", {})
        renames = {n: f"{service.title()}{n}" for n, s in own.items() if n in schemas and schemas[n] != s}
        doc = _rename_refs(original, renames)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas[renames.get(name, name)] = schema
        for path, item in doc.get("paths", {}).items():
            for method, op in item.items():
                endpoint = endpoints.get((_template(path), method))
                if endpoint is not None and endpoint.upstream == service:
                    paths.setdefault(path, {})[method] = _document_operation(endpoint, op)
    _closed_bodies(schemas, paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Canvas-Verse API",
            "version": version,
            "description": "The public API, served by the gateway. Authenticate with the `session` "
            "cookie or `Authorization: Bearer <token>`.",
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": _used(schemas, paths), "securitySchemes": _SECURITY_SCHEMES},
    }


class SchemaCache:
    def __init__(self, upstreams: dict[str, Upstream], table: RouteTable, secret: bytes, ttl: float) -> None:
        self.upstreams = upstreams
        self.table = table
        self.secret = secret
        self.ttl = ttl
        self._doc: dict[str, Any] | None = None
        self._fetched_at = 0.0

    async def document(self) -> dict[str, Any]:
        if self._doc is not None and time.monotonic() - self._fetched_at < self.ttl:
            return self._doc
        try:
            docs = {name: await self._fetch(upstream) for name, upstream in self.upstreams.items()}
        except Exception as exc:
            if self._doc is not None:
                return self._doc
            raise Unavailable("The API description is not available yet", retry_after=5) from exc
        self._doc = merge(docs, self.table)
        self._fetched_at = time.monotonic()
        return self._doc

    async def _fetch(self, upstream: Upstream) -> dict[str, Any]:
        headers = {internal_auth.HEADER: internal_auth.sign(self.secret, audience=upstream.name)}
        status, body = await upstream.json("GET", SERVICE_SCHEMA_PATH, headers=headers)
        if status != 200:
            raise RuntimeError(f"{upstream.name} schema: {status}")
        doc: dict[str, Any] = msgspec.json.decode(body)
        return doc


def schema_router(cache: SchemaCache) -> Router:
    """/schema (Swagger UI), /schema/openapi.json and /schema/assets (Swagger UI's own files)."""
    swagger = SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )
    assets = create_static_files_router(
        path="/assets", directories=[SWAGGER_UI_DIR], name="swagger-ui", include_in_schema=False
    )

    @get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> Response[dict[str, Any]]:
        return Response(await cache.document(), media_type=OPENAPI_MEDIA_TYPE)

    @get("/", include_in_schema=False, media_type="text/html")
    async def interactive_docs(request: Request[Any, Any, Any]) -> bytes:
        return swagger.render(request, await cache.document())

    return Router(path="/schema", route_handlers=[openapi_json, interactive_docs, assets])
