"""The docs stay true: the README's settings table is the settings doc, every make target exists,
`.env.example` is the generated one, and no file refers to a document that is not in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from devtools.processes import ROOT
from devtools.settings_doc import HEADER, MEANINGS, env_example, settings_classes, table, variables
from shared.settings import from_env

README = (ROOT / "README.md").read_text()


def _readme_table() -> str:
    lines = README.splitlines()
    start = lines.index(HEADER.splitlines()[0])
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def test_every_setting_has_a_meaning() -> None:
    assert [name for _, name, _ in variables() if name not in MEANINGS] == []
    assert set(MEANINGS) <= {name for _, name, _ in variables()}  # none left over from a removed setting


def test_readme_settings_table_is_the_settings_doc_output() -> None:
    assert _readme_table() == table()


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
    for name, value in re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M):
        if value:
            environ[name] = value
    assert len(environ) > 50
    for _, cls, prefix in settings_classes():
        assert from_env(cls, prefix, environ) == from_env(cls, prefix, {})


def _repo_files() -> list[Path]:
    """The repository's files: tracked, plus new ones not ignored (what a clone would hold once committed)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        return None


# A markdown link's target, and a document named in any file (`docs/api.md`, DESIGN.md, ../x.md).
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_NAME = re.compile(r"(?<![\w/.-])((?:\.\./|\./)*[\w/-]*\w\.md)\b")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def _broken_references(path: Path, text: str, names: frozenset[str] = frozenset()) -> list[str]:
    """Targets resolve from the file's folder or the repository's root. In code a bare file name
    (`tmp_path / "REPORT.md"`) is a file the code makes: it passes when the repository has one so named."""
    broken = []
    targets = set(DOC_NAME.findall(text))
    if path.suffix == ".md":
        targets |= {t for t in MD_LINK.findall(text) if not re.match(r"[a-z]+:", t)}
    for target in sorted(targets):
        name, _, anchor = target.partition("#")
        found = [p for p in (path.parent / name, ROOT / name) if p.exists()] if name else [path]
        made_by_code = path.suffix != ".md" and "/" not in name and name in names
        if found:
            is_heading = not anchor or found[0].suffix != ".md" or anchor in _anchors(found[0].read_text())
        if not (found and is_heading) and not (made_by_code and not anchor):
            broken.append(target)
    return broken


def test_every_referenced_document_is_in_the_repository() -> None:
    """A clone is all a reader has: a document named or linked anywhere must exist, at that path,
    with that heading anchor (markdown links, and `*.md` names in code, comments and docs)."""
    files = _repo_files()
    names = frozenset(p.name for p in files)
    broken = {}
    for path in files:
        text = _text(path) if path != Path(__file__) else None  # this file's examples are broken on purpose
        if text is not None and (found := _broken_references(path, text, names)):
            broken[str(path.relative_to(ROOT))] = found
    assert broken == {}


def test_the_reference_check_finds_what_is_missing(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A section (planned)\n")
    text = (
        "See DESIGN.md, `API.md`, [x](missing.md), [y](page.md#a-section-planned), [z](page.md#nope), "
        "[w](https://example.com/a.md), [v](#title)."
    )
    assert _broken_references(page, text) == ["API.md", "DESIGN.md", "missing.md", "page.md#nope"]
    code = tmp_path / "tool.py"
    # In code, a bare name the repository has passes (a file the code makes); a path must resolve.
    assert _broken_references(code, '"API.md" "docs/API.md" "page.md"', frozenset({"API.md"})) == [
        "docs/API.md"
    ]
