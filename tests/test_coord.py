"""The coordination interface (lanes/coord/): local and remote, against real git.

The remote here is a `file://` bare repository, several clones standing for several
machines; tests/test_remote.py runs the same against git daemon and smart HTTP.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lanes import config, coord, git, scaffold
from lanes.coord import PendingEvent
from lanes.errors import BadInput, Contention, OperationalError
from tests.conftest import LANES, commit_file, lanes_json


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_clone(tmp_path: Path, url: str, name: str) -> Path:
    """A clone of `url` configured to coordinate through it (remote = "origin")."""
    dest = tmp_path / name
    _git(tmp_path, "clone", "-q", url, str(dest))
    root = tmp_path / f"wt-{name}"
    root.mkdir()
    py = dest / "pyproject.toml"
    text = re.sub(r'worktree_root = ".*"', f'worktree_root = "{root}"', py.read_text())
    if 'remote = "origin"' not in text:  # the seed coordinates on one machine (the default)
        text = text.replace('stale_after = "30m"', 'stale_after = "30m"\nremote = "origin"')
    py.write_text(text)
    return dest


@pytest.fixture
def bare(tmp_path: Path, seed_repo: Path) -> Path:
    path = tmp_path / "srv.git"
    _git(tmp_path, "clone", "-q", "--bare", str(seed_repo), str(path))
    return path


@pytest.fixture
def clones(tmp_path: Path, bare: Path) -> list[Path]:
    return [make_clone(tmp_path, f"file://{bare}", f"m{i}") for i in range(3)]


def server_refs(bare: Path, pattern: str = "refs/") -> dict[str, str]:
    out = _git(bare, "for-each-ref", "--format=%(refname) %(objectname)", pattern)
    return dict(line.split(" ", 1) for line in out.splitlines() if line)  # type: ignore[misc]


# -- choosing ----------------------------------------------------------------------------


def test_local_is_the_default(tmp_path: Path, worktree_root: Path) -> None:
    plain = scaffold.make_seed_repo(tmp_path / "plain", worktree_root)  # no `remote` set
    assert "remote" not in (plain / "pyproject.toml").read_text()
    assert coord.for_config(config.load(plain)).kind == "local"


def test_a_remote_that_does_not_exist_is_bad_configuration(clones: list[Path]) -> None:
    py = clones[0] / "pyproject.toml"
    py.write_text(py.read_text().replace('remote = "origin"', 'remote = "nowhere"'))
    with pytest.raises(BadInput) as err:
        coord.for_config(config.load(clones[0]))
    assert err.value.code == "bad-config" and "nowhere" in err.value.message
    code, doc = lanes_json(clones[0], "claim", "w", "a", "--agent", "x")
    assert code == 2 and doc["error"] == "bad-config"


# -- local -------------------------------------------------------------------------------


@pytest.mark.local_coord  # the filelock and update-ref; remote: the tests below
def test_local_lease_is_exclusive_and_land_is_a_compare_and_swap(cfg: config.Config) -> None:
    c = coord.for_config(cfg)
    with c.integrator_lease("w", "first"):
        with pytest.raises(Contention) as err, c.integrator_lease("w", "second"):
            pass
        assert err.value.code == "integrator-running" and err.value.exit_code == 3
    repo = cfg.main_checkout
    old = git.rev_parse(repo, "main") or ""
    new = git.commit_tree(repo, f"{old}^{{tree}}", [old], "landed")
    done = c.land("w", new, old, [PendingEvent("integrate-done", "", "integrator")])
    assert done.moved and git.rev_parse(repo, "main") == new
    assert [e.event for e in c.ledger("w").events()] == ["integrate-done"]
    again = c.land("w", new, old, [PendingEvent("integrate-done")])
    assert not again.moved and again.found == new
    assert len(c.ledger("w").events()) == 1


# -- remote: claims ----------------------------------------------------------------------


def test_a_claim_is_a_ref_naming_its_claimant_and_the_loser_is_told(
    clones: list[Path], bare: Path
) -> None:
    code, won = lanes_json(clones[0], "claim", "w", "a", "--agent", "alice")
    assert code == 0, won
    code, lost = lanes_json(clones[1], "claim", "w", "a", "--agent", "bob")
    assert code == 3 and lost["error"] == "claimed" and lost["holder"] == "alice"
    sha = server_refs(bare)["refs/lanes/w/claims/a"]
    record = json.loads(_git(bare, "show", f"{sha}:claim.json"))
    assert record["agent"] == "alice" and "alice" in _git(bare, "log", "-1", "--format=%B", sha)
    # nothing of the loser's claim exists on its machine
    assert not (clones[1] / "tools/offline/_inbox/w/a").exists()
    events = [
        (e.event, e.agent) for e in coord.for_config(config.load(clones[2])).ledger("w").events()
    ]
    assert events == [("claim", "alice"), ("claim-refused", "bob")]


def test_heartbeat_submit_release_move_the_ref_with_a_pinned_lease(
    clones: list[Path], bare: Path
) -> None:
    code, won = lanes_json(clones[0], "claim", "w", "a", "--agent", "alice")
    first = server_refs(bare)["refs/lanes/w/claims/a"]
    assert lanes_json(clones[0], "heartbeat", "w", "a")[0] == 0
    beat = server_refs(bare)["refs/lanes/w/claims/a"]
    assert beat != first and _git(bare, "rev-parse", f"{beat}^") == first
    wt = Path(won["worktree"])
    commit_file(wt, "src/new.py", "x = 1\n")
    assert lanes_json(wt, "fragment", "version", "minor")[0] == 0
    code, sub = lanes_json(clones[0], "submit", "w", "a")
    assert code == 0, sub
    refs = server_refs(bare)
    assert refs["refs/heads/lanes/w/a"] == sub["head"]
    names = _git(bare, "ls-tree", "--name-only", "-r", refs["refs/lanes/w/claims/a"])
    assert "claim.json" in names and re.search(r"fragments/\d{20}-version-", names)
    # another machine sees the lane submitted, and cannot release it
    assert lanes_json(clones[1], "status", "w")[1]["lanes"][0]["state"] == "submitted"
    code, rel = lanes_json(clones[0], "release", "w", "a")
    assert code == 0, rel
    assert "refs/lanes/w/claims/a" not in server_refs(bare)
    code, again = lanes_json(clones[1], "claim", "w", "a", "--agent", "bob")
    assert code == 0, again


def test_a_stale_local_claim_is_noticed_and_archived(clones: list[Path], bare: Path) -> None:
    """Released on the remote behind this machine's back (or by a command killed between
    its remote and local steps): the next command finds the remote's truth."""
    lanes_json(clones[0], "claim", "w", "a", "--agent", "alice")
    _git(bare, "update-ref", "-d", "refs/lanes/w/claims/a")
    code, doc = lanes_json(clones[0], "heartbeat", "w", "a")
    assert code == 4 and doc["error"] == "not-held"
    assert not (clones[0] / "tools/offline/_inbox/w/a").exists()
    archived = list((clones[0] / "tools/offline/_inbox/w/.archive").iterdir())
    assert [p.name.split("-")[1] for p in archived] == ["superseded"]


def test_an_unreachable_remote_is_exit_1_naming_it_and_changes_nothing(
    clones: list[Path], tmp_path: Path
) -> None:
    _git(clones[0], "remote", "set-url", "origin", f"file://{tmp_path}/gone.git")
    code, doc = lanes_json(clones[0], "claim", "w", "a", "--agent", "alice")
    assert code == 1 and doc["error"] == "remote-failed" and "origin" in doc["message"]
    assert not (clones[0] / "tools/offline/_inbox/w/a").exists()
    assert not git.branch_exists(clones[0], "lanes/w/a")


RACER = """
import json, subprocess, sys
p = subprocess.run({lanes!r} + ["claim", "w", sys.argv[1], "--agent", sys.argv[2], "--json"],
                   capture_output=True, text=True)
print(json.dumps({{"code": p.returncode, "doc": json.loads(p.stdout or "{{}}")}}))
"""


def test_48_racers_on_3_clones_over_8_lanes(clones: list[Path], bare: Path) -> None:
    procs = []
    for m, clone in enumerate(clones):
        for i in range(16):
            agent = f"m{m}-r{i}"
            script = RACER.format(lanes=LANES)
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", script, f"l{i % 8}", agent],
                    cwd=clone,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
    results = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    holders = {
        ref.rsplit("/", 1)[-1]: json.loads(_git(bare, "show", f"{sha}:claim.json"))["agent"]
        for ref, sha in server_refs(bare, "refs/lanes/w/claims/").items()
    }
    assert len(holders) == 8
    winners = [r for r in results if r["code"] == 0]
    losers = [r for r in results if r["code"] != 0]
    assert len(winners) == 8 and {w["doc"]["agent"] for w in winners} == set(holders.values())
    odd = [r for r in losers if r["code"] != 3 or r["doc"]["holder"] != holders[r["doc"]["lane"]]]
    assert not odd, odd
    log = coord.for_config(config.load(clones[0])).ledger("w")
    counts = Counter(e.event for e in log.events())
    assert counts == {"claim": 8, "claim-refused": 40}
    assert log.verify().ok


APPENDER = """
import sys
from lanes import config, coord
log = coord.for_config(config.load()).ledger("w")
for i in range(int(sys.argv[2])):
    log.append("fragment", "", sys.argv[1], n=i)
"""


def test_concurrent_appends_from_3_clones_never_fork_or_lose_an_event(
    clones: list[Path], bare: Path
) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, f"m{m}-w{w}", "8"], cwd=clone)
        for m, clone in enumerate(clones)
        for w in range(3)
    ]
    assert all(p.wait(timeout=600) == 0 for p in procs)
    log = coord.for_config(config.load(clones[1])).ledger("w")
    events = log.events()
    assert [e.seq for e in events] == list(range(1, 73))
    assert sorted((e.agent, e.details["n"]) for e in events) == sorted(
        (f"m{m}-w{w}", i) for m in range(3) for w in range(3) for i in range(8)
    )
    tip = server_refs(bare)["refs/lanes/w/ledger"]
    assert _git(bare, "rev-list", "--count", "--merges", tip) == "0"
    assert _git(bare, "rev-list", "--count", tip) == "72"
    report = log.verify()
    assert report.ok and report.events == 72
    # the rendering is the chain; an edit of it is named, and the truth rendered again
    text = log.path.read_text().replace("m0-w0", "m9-w9", 1)
    log.path.write_text(text)
    assert not log.verify().ok
    assert log.verify().ok


LEASE = """
import sys, time
from lanes import config, coord
c = coord.for_config(config.load())
try:
    with c.integrator_lease("w", sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
except Exception as exc:
    print(getattr(exc, "code", exc), getattr(exc, "exit_code", ""), flush=True)
"""


def test_two_integrators_on_two_clones_one_wins(clones: list[Path], bare: Path) -> None:
    first = subprocess.Popen(
        [sys.executable, "-c", LEASE, "first", "5"],
        cwd=clones[0],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert first.stdout is not None and first.stdout.readline().strip() == "held"
    second = subprocess.run(
        [sys.executable, "-c", LEASE, "second", "0"], cwd=clones[1], capture_output=True, text=True
    )
    assert second.stdout.split() == ["integrator-running", "3"]
    first.communicate(timeout=60)
    assert "refs/lanes/w/integrator" not in server_refs(bare)  # released
    third = subprocess.run(
        [sys.executable, "-c", LEASE, "third", "0"], cwd=clones[1], capture_output=True, text=True
    )
    assert third.stdout.split() == ["held"]


def test_a_stale_integrator_lease_is_taken_over(clones: list[Path], bare: Path) -> None:
    env = {"GIT_COMMITTER_DATE": "2000-01-01T00:00:00Z"}
    tree = subprocess.run(
        ["git", "mktree"], cwd=bare, input="", capture_output=True, text=True, check=True
    ).stdout.strip()
    dead = subprocess.run(
        ["git", "commit-tree", tree, "-m", "lanes integrator w: dead"],
        cwd=bare,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()
    _git(bare, "update-ref", "refs/lanes/w/integrator", dead)
    c = coord.for_config(config.load(clones[0]))
    with c.integrator_lease("w", "new"):
        assert server_refs(bare)["refs/lanes/w/integrator"] != dead


def test_land_moves_main_the_ledger_and_the_claims_in_one_push(
    clones: list[Path], bare: Path
) -> None:
    code, _ = lanes_json(clones[0], "claim", "w", "a", "--agent", "alice")
    assert code == 0
    c = coord.for_config(config.load(clones[2]))
    repo = clones[2]
    old = git.rev_parse(repo, "main") or ""
    new = git.commit_tree(repo, f"{old}^{{tree}}", [old], "landed by the pass")
    claim = server_refs(bare)["refs/lanes/w/claims/a"]
    # another machine appends meanwhile: the land retries on the new tip, never forks
    coord.for_config(config.load(clones[1])).ledger("w").append("verify", "", "gate")
    done = c.land("w", new, old, [PendingEvent("integrated", "a", "alice")], ["a"])
    assert done.moved
    refs = server_refs(bare)
    assert refs["refs/heads/main"] == new
    assert _git(bare, "rev-parse", f"{refs['refs/lanes/w/claims/a']}^") == claim
    log = c.ledger("w")
    assert [e.event for e in log.events()] == ["claim", "verify", "integrated"]
    assert log.verify().ok
    # a lost race changes nothing
    other = git.commit_tree(repo, f"{old}^{{tree}}", [old], "a rival")
    lost = c.land("w", other, old, [PendingEvent("integrated", "a", "alice")], ["a"])
    assert not lost.moved and lost.found == new
    assert server_refs(bare) == refs


def test_land_on_an_unreachable_remote_is_remote_failed(clones: list[Path], tmp_path: Path) -> None:
    c = coord.for_config(config.load(clones[0]))
    _git(clones[0], "remote", "set-url", "origin", f"file://{tmp_path}/gone.git")
    old = git.rev_parse(clones[0], "main") or ""
    with pytest.raises(OperationalError) as err:
        c.land("w", old, old, [])
    assert err.value.code == "remote-failed"


# -- remote: the ledger's verify (the counterpart of tests/test_ledger.py's file checks) ----


def test_remote_verify_finds_an_edited_rendering_a_broken_row_and_a_rewritten_chain(
    clones: list[Path], bare: Path
) -> None:
    a, b = clones[0], clones[1]
    for lane, agent in (("x", "alice"), ("y", "bob")):
        assert lanes_json(a, "claim", "w", lane, "--agent", agent)[0] == 0
    code, doc = lanes_json(a, "ledger", "verify", "w")  # `a` remembers the tip it saw
    assert code == 0 and doc["events"] == 2, doc
    # the rendering edited by hand: found, and rendered again from the remote
    rendering = a / "tools/offline/_inbox/w/AGENT_LEDGER.md"
    text = rendering.read_text()
    assert "| bob |" in text
    rendering.write_text(text.replace("| bob |", "| eve |"))
    code, doc = lanes_json(a, "ledger", "verify", "w")
    assert code == 4 and doc["error"] == "ledger-broken" and "edited by hand" in doc["message"]
    assert rendering.read_text() == text
    assert lanes_json(a, "ledger", "verify", "w")[0] == 0
    ref, tip = "refs/lanes/w/ledger", server_refs(bare)["refs/lanes/w/ledger"]
    parent = _git(bare, "rev-parse", f"{tip}^")
    empty = _git(bare, "rev-parse", f"{tip}^{{tree}}")
    # a row edited on the server: its hash no longer links it to the row before
    edited = _git(bare, "log", "-1", "--format=%B", tip).replace("bob", "eve")
    forged = _git(bare, "commit-tree", empty, "-p", parent, "-m", edited)
    _git(bare, "update-ref", ref, forged, tip)
    code, doc = lanes_json(b, "ledger", "verify", "w")
    assert code == 4 and "expected event #2 chained" in doc["message"], doc
    # the tail rewritten with a hash that links: only the tip a machine saw tells
    c = coord.for_config(config.load(b))
    c._fetch([parent], "test")  # type: ignore[attr-defined]
    rewritten, _ = c.ledger("w").build(parent, [PendingEvent("claim", "y", "eve")])  # type: ignore[attr-defined]
    _git(b, "push", "-q", "--force", "origin", f"{rewritten}:{ref}")
    assert lanes_json(b, "ledger", "verify", "w")[0] == 0  # b never saw the old tip
    code, doc = lanes_json(a, "ledger", "verify", "w")
    assert code == 4 and "no longer holds" in doc["message"] and tip[:12] in doc["message"]
