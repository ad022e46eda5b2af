"""Claims: one holder per lane under contention, a working worktree for every winner,
nothing half-done, nothing followed or overwritten."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanes import claims, config, state
from lanes.errors import Contention, OperationalError, Refused
from tests.conftest import LANES, commit_file, git, lanes_json, run_lanes, snapshot


def test_claim_makes_a_worktree_on_its_branch_from_main(cfg: config.Config) -> None:
    main_tip = git(cfg.main_checkout, "rev-parse", "main")
    result = claims.claim(cfg, "44", "api-dim-a", "agent-1")
    wt = Path(result.worktree)
    assert wt == cfg.worktree_path("44", "api-dim-a")
    assert wt.name == "jpcite-44-api-dim-a"
    assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == "lanes/44/api-dim-a"
    assert git(wt, "rev-parse", "HEAD") == main_tip == result.base
    assert (wt / "scripts/schema_guard.py").is_file()
    assert git(wt, "status", "--porcelain") == ""
    record = claims.read_record(cfg.claim_dir("44", "api-dim-a"))
    assert record is not None and record.agent == "agent-1" and record.base == main_tip
    assert [e.event for e in claims.ledger(cfg, "44").events()] == ["claim"]
    # the inbox never shows up as untracked work in the main checkout
    assert git(cfg.main_checkout, "status", "--porcelain") == ""


def test_second_claimer_gets_contention_naming_the_holder(cfg: config.Config) -> None:
    claims.claim(cfg, "44", "a", "first")
    with pytest.raises(Contention) as info:
        claims.claim(cfg, "44", "a", "second")
    assert info.value.extra["holder"] == "first"
    events = claims.ledger(cfg, "44").events()
    assert [(e.event, e.agent) for e in events] == [("claim", "first"), ("claim-refused", "second")]
    assert events[1].details["holder"] == "first"


def test_cli_claim_json_and_exit_codes(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot-1")
    assert rc == 0
    assert doc["schema_version"] == 1
    assert {"wave", "lane", "agent", "worktree", "branch", "base", "claim_dir"} <= doc.keys()
    assert Path(doc["worktree"]).is_dir()
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot-2")
    assert rc == 3
    assert doc["error"] == "claimed" and doc["holder"] == "bot-1"


@pytest.mark.slow
def test_race_of_32_processes_over_8_lanes(seed_repo: Path, cfg: config.Config) -> None:
    lanes = [f"lane-{i}" for i in range(8)]
    procs = []
    for i in range(32):
        lane = lanes[i % 8]
        procs.append(
            (
                f"agent-{i}",
                lane,
                subprocess.Popen(
                    [*LANES, "claim", "w1", lane, "--agent", f"agent-{i}", "--json"],
                    cwd=seed_repo,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    outcomes: dict[str, list[tuple[int, str, dict[str, str]]]] = {lane: [] for lane in lanes}
    for agent, lane, proc in procs:
        out, _ = proc.communicate(timeout=120)
        outcomes[lane].append((proc.returncode, agent, json.loads(out)))
    for lane, results in outcomes.items():
        winners = [(agent, doc) for rc, agent, doc in results if rc == 0]
        assert len(winners) == 1, (lane, results)
        winner, doc = winners[0]
        losers = [(rc, doc) for rc, _, doc in results if rc != 0]
        assert all(rc == 3 and d["holder"] == winner for rc, d in losers), losers
        wt = Path(doc["worktree"])
        assert git(wt, "rev-parse", "--abbrev-ref", "HEAD") == f"lanes/w1/{lane}"
        assert git(wt, "status", "--porcelain") == ""
        assert (wt / "pyproject.toml").is_file()
        record = claims.read_record(cfg.claim_dir("w1", lane))
        assert record is not None and record.agent == winner
    log = claims.ledger(cfg, "w1")
    events = log.events()
    assert sorted(e.event for e in events) == ["claim"] * 8 + ["claim-refused"] * 24
    assert log.verify().ok
    assert {h.state for h in state.histories(cfg, "w1").values()} == {"claimed"}


@pytest.mark.parametrize(
    "args",
    [
        ("claim", "Bad", "a", "--agent", "x"),
        ("claim", "44", "../up", "--agent", "x"),
        ("claim", "44", "a..b", "--agent", "x"),
        ("claim", "44", "a", "--agent", "-bad"),
        ("claim", "44", "a", "--agent", "has space"),
        ("claim", "44", "a", "--agent", "x", "--base", "no-such-ref"),
        ("claim", "44", "a", "--agent", "x", "--base", "lanes/44/other"),
        ("claim", "44", "a.lock", "--agent", "x"),
        ("claim", "44", "a", "--agent", "x", "--sparse", "../etc"),
        ("claim", "44", "a", "--agent", "x", "--sparse", "/abs"),
        ("claim", "44", "a", "--agent", "x", "--sparse", "!src"),
        ("claim", "44", "a", "--agent", "x", "--sparse", "no-such-dir"),
        ("claim", "44", "a", "--agent", "x", "--sparse", "pyproject.toml"),
        ("claim", "44", "a", "--agent", "x", "--sparse", ".git"),
        ("claim", "44", "a", "--agent", "x", "--base", ""),
        ("claim", "44", "a"),
        ("heartbeat", "44", "BAD"),
        ("release", "44/x", "a"),
    ],
)
def test_refused_input_exits_2_and_changes_nothing(
    seed_repo: Path, worktree_root: Path, args: tuple[str, ...]
) -> None:
    before = snapshot(seed_repo, worktree_root, skip=())
    proc = run_lanes(seed_repo, *args, "--json")
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["error"] and doc["message"] and doc["hint"]
    assert snapshot(seed_repo, worktree_root, skip=()) == before


@pytest.mark.parametrize("kind", ["dir", "file", "symlink-to-dir", "dangling-symlink"])
def test_a_path_in_the_way_is_never_followed_or_removed(
    cfg: config.Config, tmp_path: Path, kind: str
) -> None:
    target = cfg.worktree_path("44", "a")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    if kind == "dir":
        target.mkdir()
        (target / "leftover.txt").write_text("old\n")
    elif kind == "file":
        target.write_text("a file\n")
    elif kind == "symlink-to-dir":
        target.symlink_to(victim)
    else:
        target.symlink_to(tmp_path / "nowhere")
    before = snapshot(victim, target.parent, skip=())
    with pytest.raises(OperationalError) as info:
        claims.claim(cfg, "44", "a", "agent-1")
    assert info.value.code == "worktree-path-exists"
    assert info.value.exit_code == 1
    assert snapshot(victim, target.parent, skip=()) == before
    assert os.path.lexists(target)
    # the lane is not left held, and no branch was left behind
    assert not cfg.claim_dir("44", "a").exists()
    assert git(cfg.main_checkout, "branch", "--list", "lanes/44/a") == ""
    assert [e.event for e in claims.ledger(cfg, "44").events()] == ["claim-refused"]
    # once the obstacle is moved away, the lane can be claimed
    if target.is_dir() and not target.is_symlink():
        (target / "leftover.txt").unlink()
        target.rmdir()
    else:
        target.unlink()
    assert Path(claims.claim(cfg, "44", "a", "agent-1").worktree).is_dir()


def test_worktree_failure_undoes_the_claim_and_keeps_an_existing_branch(
    cfg: config.Config, tmp_path: Path
) -> None:
    # the lane's branch is already checked out elsewhere: git refuses the worktree
    commit_sha = git(cfg.main_checkout, "rev-parse", "main")
    git(cfg.main_checkout, "worktree", "add", "-q", "-b", "lanes/44/a", str(tmp_path / "elsewhere"))
    with pytest.raises(OperationalError):
        claims.claim(cfg, "44", "a", "agent-1")
    assert not cfg.claim_dir("44", "a").exists()
    assert git(cfg.main_checkout, "rev-parse", "lanes/44/a") == commit_sha
    assert not cfg.worktree_path("44", "a").exists()


def test_heartbeat_release_and_reclaim_resumes_committed_work(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    hb = cfg.claim_dir("44", "a") / claims.HEARTBEAT
    os.utime(hb, (1, 1))
    claims.heartbeat(cfg, "44", "a")
    assert hb.stat().st_mtime > 1
    sha = commit_file(wt, "src/feature.py", "x = 1\n")
    (wt / "src/scratch.txt").write_text("not committed\n")
    result = claims.release(cfg, "44", "a")
    assert not wt.exists()
    assert result.saved_patch and "scratch.txt" in Path(result.saved_patch).read_text()
    assert not cfg.claim_dir("44", "a").exists()
    assert state.lane_state(cfg, "44", "a") == "released"
    with pytest.raises(Refused):
        claims.heartbeat(cfg, "44", "a")
    again = claims.claim(cfg, "44", "a", "agent-2")
    assert again.resumed
    assert git(Path(again.worktree), "rev-parse", "HEAD") == sha
    assert state.lane_state(cfg, "44", "a") == "claimed"


def test_release_keep_worktree_leaves_files(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "notes.txt").write_text("mine\n")
    claims.release(cfg, "44", "a", keep_worktree=True)
    assert (wt / "notes.txt").read_text() == "mine\n"
    # The next claim of the lane takes the kept worktree over, work and all.
    again = claims.claim(cfg, "44", "a", "agent-2")
    assert (again.worktree, again.resumed) == (str(wt), True)
    assert (wt / "notes.txt").read_text() == "mine\n"
    assert claims.ledger(cfg, "44").events()[-1].details["kept_worktree"] is True


def test_a_kept_worktree_is_taken_over_under_a_symlinked_worktree_root(
    seed_repo: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real-wt"
    real.mkdir()
    (tmp_path / "linked-wt").symlink_to(real)  # as /tmp is a link to /private/tmp on macOS
    (seed_repo / "lanes.toml").write_text(f'worktree_root = "{tmp_path / "linked-wt"}"\n')
    cfg = config.load(seed_repo)
    wt = Path(claims.claim(cfg, "44", "k", "agent-1").worktree)
    claims.release(cfg, "44", "k", keep_worktree=True)
    assert claims.claim(cfg, "44", "k", "agent-2").worktree == str(wt)


def test_a_worktree_of_another_lane_or_repository_at_the_path_is_not_taken_over(
    cfg: config.Config, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "main")
    commit_file(other, "x", "1\n")
    git(other, "branch", "lanes/44/a")
    git(other, "worktree", "add", "-q", str(cfg.worktree_path("44", "a")), "lanes/44/a")
    with pytest.raises(OperationalError) as err:
        claims.claim(cfg, "44", "a", "agent-1")
    assert err.value.code == "worktree-path-exists"
    assert state.lane_state(cfg, "44", "a") != "claimed"


def test_an_integrated_lane_cannot_be_claimed_again(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    commit_file(wt, "src/a.py", "a = 1\n")  # its copy on main is not "ahead"
    claims.ledger(cfg, "44").append("integrated", "a", "agent-1", head="x")
    with pytest.raises(Refused) as info:
        claims.claim(cfg, "44", "a", "agent-2")
    assert info.value.code == "lane-integrated"
    refused = claims.ledger(cfg, "44").events()[-1]  # every attempt is in the ledger
    assert (refused.event, refused.agent, refused.details["reason"]) == (
        "claim-refused",
        "agent-2",
        "lane-integrated",
    )
    [row] = state.status(cfg, "44")
    assert (row.state, row.commits_ahead) == ("integrated", 0)
    with pytest.raises(Refused) as info:
        claims.heartbeat(cfg, "44", "a")
    assert info.value.code == "lane-integrated"


def test_commands_inside_a_worktree_know_their_lane(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")
    wt = Path(doc["worktree"])
    rc, doc = lanes_json(wt / "src", "heartbeat")
    assert rc == 0 and (doc["wave"], doc["lane"]) == ("44", "a")
    rc, doc = lanes_json(seed_repo, "heartbeat")
    assert rc == 2 and doc["error"] == "no-lane-here" and "WAVE LANE" in doc["hint"]
    rc, doc = lanes_json(seed_repo, "fragment", "version", "patch")  # takes no WAVE LANE
    assert rc == 2 and doc["error"] == "no-lane-here" and "WAVE" not in doc["hint"]


def test_sparse_claim_checks_out_only_the_named_paths(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1", sparse=["src"]).worktree)
    assert (wt / "src/app.py").is_file()
    assert (wt / "pyproject.toml").is_file()  # cone mode keeps files at the top level
    assert not (wt / "scripts").exists()
    assert not (wt / ".github").exists()
    assert git(wt, "status", "--porcelain") == ""


def test_status_reports_lanes(seed_repo: Path, cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    commit_file(wt, "src/a.py", "a = 1\n")
    claims.claim(cfg, "44", "b", "agent-2")
    rc, doc = lanes_json(seed_repo, "status", "44")
    assert rc == 0
    rows = {r["lane"]: r for r in doc["lanes"]}
    assert rows["a"]["agent"] == "agent-1" and rows["a"]["commits_ahead"] == 1
    assert rows["b"]["commits_ahead"] == 0 and rows["b"]["state"] == "claimed"
    assert {"wave", "lane", "agent", "state", "worktree", "branch"} <= rows["a"].keys()


def test_a_repository_without_its_main_branch_says_so(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    rc, doc = lanes_json(repo, "claim", "44", "a", "--agent", "x")
    assert (rc, doc["error"]) == (2, "no-main")
    assert "main = " in doc["hint"] and "--base" not in doc["hint"]
    assert not (repo / "tools").exists()


@pytest.mark.parametrize("where", ["a-file", "inside-the-checkout"])
def test_a_worktree_root_that_cannot_hold_lanes_is_refused(
    seed_repo: Path, tmp_path: Path, where: str
) -> None:
    root = tmp_path / "a-file" if where == "a-file" else seed_repo / "lanes-here"
    if where == "a-file":
        root.write_text("x")
    else:
        root.mkdir()
    (seed_repo / "lanes.toml").write_text(f'worktree_root = "{root}"\n')
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "x")
    assert (rc, doc["error"]) == (2, "bad-config") and "worktree_root" in doc["message"]
    assert git(seed_repo, "branch", "--list", "lanes/44/a") == ""


# -- release saves what is on disk, checks it, and only then removes (issue 8, case 6) ------


def test_release_after_git_rm_cached_saves_every_file_on_disk(
    seed_repo: Path, cfg: config.Config, tmp_path: Path
) -> None:
    from tests.test_saves import on_disk, restored

    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "src/app.py").write_text("edited\n")
    (wt / "src/new.py").write_text("untracked\n")
    git(wt, "rm", "-r", "-q", "--cached", ".")  # a common recipe: the index is now empty
    before = on_disk(wt)
    rc, doc = lanes_json(seed_repo, "release", "44", "a")
    assert rc == 0 and doc["saved_patch"] and not wt.exists()
    back = restored(cfg, doc["saved_patch"], doc["saved_ignored"], "lanes/44/a", tmp_path / "b")
    assert on_disk(back) == before


def test_release_saves_nested_repositories_whole_and_names_them(
    seed_repo: Path, cfg: config.Config, tmp_path: Path
) -> None:
    from tests.test_saves import on_disk, restored

    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "vendor/lib").mkdir(parents=True)
    git(wt / "vendor/lib", "init", "-q")
    sha = commit_file(wt / "vendor/lib", "lib.py", "its own commit\n")
    (wt / "fresh").mkdir()
    git(wt / "fresh", "init", "-q")  # no commit at all: `git add` fails on it
    (wt / "fresh/idea.md").write_text("uncommitted, in a repository with no commit\n")
    before = on_disk(wt)
    rc, doc = lanes_json(seed_repo, "release", "44", "a")
    assert rc == 0, doc
    assert doc["saved_nested"] == ["fresh", "vendor/lib"] and not wt.exists()
    back = restored(cfg, doc["saved_patch"], doc["saved_ignored"], "lanes/44/a", tmp_path / "b")
    assert on_disk(back) == before
    assert git(back / "vendor/lib", "rev-parse", "HEAD") == sha


def test_release_that_cannot_save_exits_1_and_removes_nothing(
    seed_repo: Path, cfg: config.Config
) -> None:
    from tests.test_saves import on_disk, scratch_left

    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    git(wt, "switch", "-q", "--detach")
    commit_file(wt, "src/detached.py", "a commit only this HEAD holds\n")
    (wt / "src/app.py").write_text("edited\n")
    before = on_disk(wt)
    proc = run_lanes(seed_repo, "release", "44", "a", "--json")
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["error"]) == (1, "save-failed")
    assert "nothing was removed" in doc["message"] and "save-failed" in proc.stderr
    assert on_disk(wt) == before and state.lane_state(cfg, "44", "a") == "claimed"
    assert scratch_left(cfg.claim_dir("44", "a")) == []


def test_release_whose_worktree_changes_during_the_save_is_refused_keeping_the_copy(
    seed_repo: Path, cfg: config.Config
) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "src/app.py").write_text("edited\n")
    spool = wt / "spool"
    spool.mkdir()
    writer = subprocess.Popen(  # an agent still writing files while its lane is released
        [
            sys.executable,
            "-c",
            "import pathlib, sys, time\n"
            "for i in range(100000):\n"
            "    (pathlib.Path(sys.argv[1]) / f'{i}.txt').write_text(str(i))\n"
            "    time.sleep(0.002)\n",
            str(spool),
        ]
    )
    try:
        while not list(spool.iterdir()):
            time.sleep(0.01)
        proc = run_lanes(seed_repo, "release", "44", "a", "--json")
    finally:
        writer.kill()
        writer.wait()
    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["error"]) == (1, "save-check-failed"), doc
    assert "on disk, not in the save" in doc["message"]
    partial = [Path(p) for p in doc["partial_save"]]
    assert [p.name for p in partial] == ["release-uncommitted.unverified.patch"]
    assert partial[0].is_file() and "+edited" in partial[0].read_text()
    assert (wt / "src/app.py").read_text() == "edited\n" and (spool / "0.txt").is_file()
    assert state.lane_state(cfg, "44", "a") == "claimed"
    rc, doc = lanes_json(seed_repo, "release", "44", "a")  # once it is quiet: released
    assert rc == 0 and doc["saved_patch"]
    assert not list(Path(doc["archived_to"]).glob("*.unverified.*"))


def _dirty_lane(cfg: config.Config, lane: str) -> Path:
    """A lane with every kind of work: committed, edited, untracked, ignored, nested."""
    wt = Path(claims.claim(cfg, "44", lane, "agent-1").worktree)
    commit_file(wt, "src/committed.py", "c = 1\n")
    (wt / ".gitignore").write_text("*.log\n")
    (wt / "src/app.py").write_text("edited\n")
    (wt / "src/untracked.py").write_text("u = 1\n")
    (wt / "notes.log").write_text("ignored notes\n")
    (wt / "vendor/lib").mkdir(parents=True)
    git(wt / "vendor/lib", "init", "-q")
    commit_file(wt / "vendor/lib", "lib.py", "nested\n")
    return wt


@pytest.mark.parametrize("point", ["save-written", "save-checked", "worktree-moved"])
def test_release_killed_at_each_step_loses_nothing_and_finishes_when_run_again(
    seed_repo: Path, cfg: config.Config, worktree_root: Path, tmp_path: Path, point: str
) -> None:
    from tests.test_saves import on_disk, restored, scratch_left

    wt = _dirty_lane(cfg, "a")
    before = on_disk(wt)
    killed = run_lanes(seed_repo, "release", "44", "a", "--json", env={"LANES_FAILPOINT": point})
    assert killed.returncode == -signal.SIGKILL
    assert state.lane_state(cfg, "44", "a") == "claimed"
    if point == "worktree-moved":  # gone from its path in one rename, never half there
        assert not wt.exists() and len(list(worktree_root.glob(".lanes-trash-*"))) == 1
    else:
        assert on_disk(wt) == before

    rc, doc = lanes_json(seed_repo, "release", "44", "a")
    assert rc == 0, doc
    back = restored(cfg, doc["saved_patch"], doc["saved_ignored"], "lanes/44/a", tmp_path / "b")
    assert on_disk(back) == before
    assert scratch_left(Path(doc["archived_to"])) == []
    assert lanes_json(seed_repo, "gc")[0] == 0
    assert not list(worktree_root.glob(".lanes-trash-*"))
    assert lanes_json(seed_repo, "ledger", "verify", "44")[0] == 0


@pytest.mark.slow
def test_release_killed_at_random_instants_loses_nothing(
    seed_repo: Path, cfg: config.Config, tmp_path: Path
) -> None:
    from tests.test_saves import on_disk, restored

    rng = random.Random(20261201)
    for round_ in range(8):
        lane = f"k{round_}"
        wt = _dirty_lane(cfg, lane)
        before = on_disk(wt)
        proc = subprocess.Popen(
            [*LANES, "release", "44", lane, "--json"],
            cwd=seed_repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.1, 0.4))  # a release here takes about 0.3 s
        proc.kill()
        proc.wait()
        if wt.exists():
            assert on_disk(wt) == before, round_  # whole, or gone in one rename
        if state.lane_state(cfg, "44", lane) == "claimed":
            assert lanes_json(seed_repo, "release", "44", lane)[0] == 0, round_
        else:  # released; the next command on the lane finishes what the kill left (on a
            # remote: the claim dir, archived where the row, pushed with the delete, says)
            assert lanes_json(seed_repo, "release", "44", lane)[0] == 4, round_
        row = [e for e in claims.ledger(cfg, "44").events() if e.lane == lane][-1]
        assert row.event == "release"
        back = restored(
            cfg,
            row.details["saved_patch"],
            row.details["saved_ignored"],
            f"lanes/44/{lane}",
            tmp_path / lane,
        )
        assert on_disk(back) == before, round_
