"""The pre-commit hooks run exactly the commands `make lint` runs."""

from __future__ import annotations

import re

import yaml

from devtools.processes import ROOT


def _lint_commands() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in recipe.splitlines()[1:] if line.startswith("\t")]
    return [re.sub(r"\$\(VENV\)", ".venv", line).removesuffix(" .") for line in lines]


def test_the_hooks_are_make_lint() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert [hook["entry"] for hook in hooks] == _lint_commands()
    assert all(hook["language"] == "system" for hook in hooks)
