"""Scenario 14 builds an old commit in a temporary worktree: it must skip cleanly where that commit is not
in the checkout (a shallow clone), and leave no worktree behind, also when the body fails."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import cast

import pytest

from bench.context import Context
from bench.report import SKIP, Outcome
from bench.scenarios import s14_end_to_end as s14
from devtools.processes import ROOT


def _worktrees() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=False
    ).stdout


def test_an_unreachable_commit_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s14, "OLD_COMMIT", "0" * 40)
    why = s14.why_unreachable()
    assert why is not None
    assert "not in this checkout" in why or "git is not installed" in why
    out = Outcome(14, "End to end", "sqlite", "goal")
    asyncio.run(s14.run(cast(Context, None), out))  # returns before touching the context
    assert out.status == SKIP
    assert out.notes[0].startswith("Skipped: ")
    assert "0" * 40 in out.notes[0]


@pytest.mark.skipif(s14.why_unreachable() is not None, reason="e078198 not in this checkout")
def test_the_old_tree_is_removed_also_on_failure() -> None:
    seen: list[Path] = []

    async def body() -> None:
        async with s14.old_tree() as tree:
            seen.append(tree)
            assert (tree / "gateway" / "app.py").exists()
            raise RuntimeError("the scenario failed")

    with pytest.raises(RuntimeError, match="the scenario failed"):
        asyncio.run(body())
    (tree,) = seen
    assert not tree.exists()
    assert str(tree) not in _worktrees()
