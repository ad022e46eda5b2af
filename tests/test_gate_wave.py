"""The gate counts a lane integrated only when main holds its landing: an `integrated` row
that no landing on main backs (appended by anyone who can write the ledger: on a remote,
anyone who can push refs/lanes/*) fails `wave-integrated` instead of hiding the work."""

from __future__ import annotations

from pathlib import Path

from lanes import config, coord
from tests.conftest import commit_file, lanes_json


def _submitted(repo: Path, lane: str) -> None:
    code, doc = lanes_json(repo, "claim", "w", lane, "--agent", f"agent-{lane}")
    assert code == 0, doc
    commit_file(Path(doc["worktree"]), f"src/{lane}.py", f"{lane} = 1\n")
    assert lanes_json(Path(doc["worktree"]), "submit")[0] == 0


def test_an_integrated_row_without_a_landing_on_main_fails_the_gate(seed_repo: Path) -> None:
    _submitted(seed_repo, "a")
    assert lanes_json(seed_repo, "integrate", "w")[0] == 0
    _submitted(seed_repo, "b")  # submitted, never integrated
    code, gate = lanes_json(seed_repo, "verify", "w")
    assert code == 4 and "submitted but not integrated: b" in str(gate["checks"])
    # a forged row: with lanes' own code, so the chain is whole
    cfg = config.load(seed_repo)
    coord.for_config(cfg).ledger("w").append("integrated", "b", "agent-b", head="0" * 40)
    assert lanes_json(seed_repo, "ledger", "verify", "w")[0] == 0
    code, gate = lanes_json(seed_repo, "verify", "w")
    assert code == 4, gate
    [check] = [c for c in gate["checks"] if c["name"] == "wave-integrated"]
    assert check["status"] == "fail" and "says b integrated" in check["detail"], check
