"""The one version number: the installed package's (`version` in pyproject.toml).

Everything that shows a version (every OpenAPI document, the gateway's merged one included) reads it
from here, so a release changes one line.
"""

from __future__ import annotations

from importlib.metadata import version

VERSION = version("canvas-verse")
