"""The README stays true to the code: every setting is documented, every make target exists."""

from __future__ import annotations

import re

from devtools.processes import ROOT
from devtools.settings_doc import env_example, settings_classes, variables
from shared.settings import from_env

README = (ROOT / "README.md").read_text()


def test_readme_documents_every_setting() -> None:
    missing = [name for _, name, _ in variables() if f"`{name}`" not in README]
    assert missing == []


def test_readme_make_commands_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, re.MULTILINE))
    used = set(re.findall(r"\bmake ([a-z-]+)", README))
    assert used
    assert used <= targets


def test_env_example_is_the_generated_one() -> None:
    """`.env.example` is `python -m devtools.settings_doc --env-example`: regenerate it after a change."""
    assert (ROOT / ".env.example").read_text() == env_example()


def test_env_example_values_are_accepted_as_written() -> None:
    """Uncommenting any line of `.env.example` as it stands gives a valid setting (its default)."""
    environ = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, sep, value = line.removeprefix("# ").partition("=")
        if sep and value and name.isupper():
            environ[name] = value
    assert len(environ) > 50
    for _, cls, prefix in settings_classes():
        assert from_env(cls, prefix, environ) == from_env(cls, prefix, {})
