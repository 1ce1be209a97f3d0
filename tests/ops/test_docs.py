"""The README stays true to the code: every setting is documented, every make target exists."""

from __future__ import annotations

import re

from devtools.processes import ROOT
from devtools.settings_doc import variables

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
