"""Remote coordination over real servers on loopback: file://, git daemon, smart HTTP
(tests/servers.py starts them). tests/test_coord.py holds the bigger races on file://."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lanes import config, coord
from tests.conftest import LANES, commit_file, lanes_json
from tests.servers import (  # noqa: F401 (fixtures)
    Remote,
    file_server,
    git_daemon,
    remote,
    remote_server,
    smart_http,
)
from tests.test_coord import make_clone


@pytest.fixture
def remote_seed(seed_repo: Path) -> Path:
    return seed_repo


def test_claim_race_submit_and_ledger_over_each_server(tmp_path: Path, remote: Remote) -> None:  # noqa: F811
    a, b, c = (make_clone(tmp_path, remote.url, name) for name in ("a", "b", "c"))
    procs = [
        subprocess.Popen(
            [*LANES, "claim", "w", f"l{i % 2}", "--agent", f"{clone.name}-{i}", "--json"],
            cwd=clone,
            stdout=subprocess.PIPE,
            text=True,
        )
        for clone in (a, b)
        for i in range(4)
    ]
    results = [(p.wait(timeout=300), json.loads(p.communicate()[0])) for p in procs]
    codes = Counter(code for code, _ in results)
    assert codes == {0: 2, 3: 2 * 4 - 2}, results
    refs = remote.refs("refs/lanes/w/claims/")
    assert sorted(refs) == ["refs/lanes/w/claims/l0", "refs/lanes/w/claims/l1"]
    holders = {doc["lane"]: doc["agent"] for code, doc in results if code == 0}
    assert all(doc["holder"] == holders[doc["lane"]] for code, doc in results if code == 3)

    lane = "l0"
    owner = a if holders[lane].startswith("a-") else b
    worktree = next(Path(d["worktree"]) for code, d in results if code == 0 and d["lane"] == lane)
    commit_file(worktree, "src/remote.py", "x = 1\n")
    assert lanes_json(owner, "submit", "w", lane)[0] == 0
    assert f"refs/heads/lanes/w/{lane}" in remote.refs("refs/heads/")

    log = coord.for_config(config.load(c)).ledger("w")
    counts = Counter(e.event for e in log.events())
    assert counts == {"claim": 2, "claim-refused": 6, "submit": 1}
    code, doc = lanes_json(c, "ledger", "verify", "w")
    assert code == 0 and doc["ok"] and doc["events"] == 9


def test_an_unreachable_server_is_exit_1_naming_the_remote(tmp_path: Path, remote: Remote) -> None:  # noqa: F811
    a = make_clone(tmp_path, remote.url, "a")
    subprocess.run(
        ["git", "remote", "set-url", "origin", remote.url.replace("srv", "nosuch", 1) + "x"],
        cwd=a,
        check=True,
    )
    proc = subprocess.run(
        [*LANES, "claim", "w", "l", "--agent", "x", "--json"], cwd=a, capture_output=True, text=True
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["error"] == "remote-failed" and "origin" in doc["message"]
    assert not (a / "tools/offline/_inbox/w/l").exists()
    assert sys.executable  # the CLI ran as a real process
