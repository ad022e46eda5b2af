"""A lane may not change what decides what every other lane's worktree gets or runs:
`.worktreeinclude` (which git-ignored files, secrets among them, are copied into each new
worktree) and `.claude/settings.json` (the hooks Claude Code runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import commit_file, lanes_json


@pytest.mark.parametrize("path", [".worktreeinclude", ".claude/settings.json", ".WorktreeInclude"])
def test_a_lane_changing_a_setup_file_is_refused(seed_repo: Path, path: str) -> None:
    code, doc = lanes_json(seed_repo, "claim", "w", "a", "--agent", "x")
    assert code == 0, doc
    wt = Path(doc["worktree"])
    commit_file(wt, path, ".env\nsecrets/**\n")
    code, doc = lanes_json(wt, "submit")
    assert code == 4 and doc["error"] == "touches-contended-surface", doc
    [found] = doc["files"]
    assert found["path"] == path and found["surface"] == "setup"
    code, brief = lanes_json(wt, "brief")
    assert code == 0 and {".worktreeinclude", ".claude/settings.json"} <= {
        c["path"] for c in brief["contended"]
    }
