"""`lanes submit` judges the worktree its agent left, not only the branch: a rebase left
in progress (the bounce follow-up) or a HEAD off the lane's branch is refused, since the
branch's tip is not the work yet; uncommitted changes are named in a warning. And inside a
worktree mid-rebase, the lane is still known (heartbeat, fragment)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import LANES, commit_file, git, lanes_json


def _claim(repo: Path, lane: str) -> Path:
    code, doc = lanes_json(repo, "claim", "w", lane, "--agent", f"agent-{lane}")
    assert code == 0, doc
    return Path(doc["worktree"])


def _conflicting(seed_repo: Path) -> Path:
    """Lane b's branch conflicts with main after lane a landed; b is mid-rebase."""
    a, b = _claim(seed_repo, "a"), _claim(seed_repo, "b")
    commit_file(a, "CHANGELOG.md", "from a\n")
    commit_file(b, "CHANGELOG.md", "from b\n")
    assert lanes_json(a, "submit")[0] == 0
    assert lanes_json(seed_repo, "integrate", "w")[0] == 0
    rebase = subprocess.run(["git", "rebase", "main"], cwd=b, capture_output=True, text=True)
    assert rebase.returncode != 0  # the conflict
    return b


def test_a_rebase_in_progress_is_refused_and_the_lane_still_known(seed_repo: Path) -> None:
    b = _conflicting(seed_repo)
    tip = git(seed_repo, "rev-parse", "lanes/w/b")
    assert lanes_json(b, "heartbeat")[0] == 0  # mid-rebase, HEAD detached: still lane b
    (b / "CHANGELOG.md").write_text("from a\nfrom b\n")
    git(b, "add", "CHANGELOG.md")
    code, doc = lanes_json(b, "submit")
    assert code == 4 and doc["error"] == "worktree-busy", doc
    assert doc["operation"] == "rebase" and "git rebase --continue" in doc["hint"]
    assert git(seed_repo, "rev-parse", "lanes/w/b") == tip  # nothing moved
    ledger = subprocess.run(
        [*LANES, "ledger", "w", "--lane", "b", "--json"],
        cwd=seed_repo,
        capture_output=True,
        text=True,
    )
    last = json.loads(ledger.stdout.splitlines()[-1])
    assert (last["event"], last["details"]["reason"]) == ("submit-refused", "worktree-busy")
    code, st = lanes_json(seed_repo, "status", "w")
    assert {ln["lane"]: ln["state"] for ln in st["lanes"]}["b"] == "claimed"
    subprocess.run(
        ["git", "-c", "core.editor=true", "rebase", "--continue"],
        cwd=b,
        check=True,
        capture_output=True,
    )
    code, doc = lanes_json(b, "submit")
    assert code == 0, doc
    assert doc["head"] == git(b, "rev-parse", "HEAD") != tip  # the rebased work


def test_a_head_off_the_branch_is_refused_and_uncommitted_work_is_named(seed_repo: Path) -> None:
    wt = _claim(seed_repo, "c")
    commit_file(wt, "src/c.py", "c = 1\n")
    git(wt, "checkout", "-q", "--detach", "HEAD~1")
    code, doc = lanes_json(seed_repo, "submit", "w", "c")
    assert code == 4 and doc["error"] == "worktree-busy" and doc["head_branch"] is None, doc
    assert "git switch lanes/w/c" in doc["hint"]
    git(wt, "switch", "-q", "lanes/w/c")
    (wt / "src" / "c.py").write_text("c = 2\n")
    (wt / "src" / "new.py").write_text("new = 1\n")
    code, doc = lanes_json(seed_repo, "submit", "w", "c")
    assert code == 0, doc
    [warning] = [w for w in doc["warnings"] if "uncommitted" in w]
    assert "src/c.py" in warning and "src/new.py" in warning and "NOT submitted" in warning
