"""The user's checkout of main, brought along when the pass moves main (integrator/checkout.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import commit_file, git, lanes_json, publish


def test_a_landed_file_never_replaces_an_ignored_one_in_the_checkout(seed_repo: Path) -> None:
    """git overwrites ignored files as expendable: a lane that committed `.env` with
    `git add -f` would have replaced the user's own, silently."""
    commit_file(seed_repo, ".gitignore", "/tools/offline/_inbox/\n.env\n")
    publish(seed_repo)  # on a remote, pushed: the pass lands on the remote's main
    (seed_repo / ".env").write_text("SECRET=mine\n", encoding="utf-8")
    rc, doc = lanes_json(seed_repo, "claim", "44", "env", "--agent", "bot")
    wt = Path(doc["worktree"])
    (wt / ".env").write_text("SECRET=the-lane's\n", encoding="utf-8")
    git(wt, "add", "-f", ".env")
    git(wt, "commit", "-qm", "config for the lane")
    assert lanes_json(wt, "submit")[0] == 0
    rc, doc = lanes_json(seed_repo, "integrate", "44")
    assert rc == 0 and doc["integrated"] == ["env"]
    assert (seed_repo / ".env").read_text(encoding="utf-8") == "SECRET=mine\n"
    assert doc["checkout"]["status"] == "detached"
    assert ".env" in doc["checkout"]["note"] and "move them aside" in doc["checkout"]["note"]
    assert git(seed_repo, "rev-parse", "HEAD") == doc["old_head"]  # nothing there reverts main


def test_a_clean_checkout_is_brought_along(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")
    wt = Path(doc["worktree"])
    commit_file(wt, "src/new.py", "X = 1\n")
    assert lanes_json(wt, "submit")[0] == 0
    rc, doc = lanes_json(seed_repo, "integrate", "44")
    assert rc == 0 and doc["checkout"]["status"] == "updated"
    assert (seed_repo / "src/new.py").read_text(encoding="utf-8") == "X = 1\n"
