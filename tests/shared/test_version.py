"""One version number: pyproject.toml's, read from the installed package's metadata by every part."""

from __future__ import annotations

import tomllib
from importlib.metadata import version

from litestar import get

from devtools.processes import ROOT
from gateway.openapi import merge
from gateway.routes import RouteTable
from shared.app import create_service_app
from shared.settings import CommonSettings
from shared.version import VERSION


def test_the_version_is_pyprojects() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert VERSION == declared == version("canvas-verse")


def test_every_openapi_document_shows_it() -> None:
    @get("/x", sync_to_thread=False)
    def x() -> str:
        return "x"

    app = create_service_app(name="t", settings=CommonSettings(), route_handlers=[x], ready_checks={})
    assert app.openapi_schema.info.version == VERSION
    assert merge({}, RouteTable(()))["info"]["version"] == VERSION
