"""gc: stale lanes are reaped without losing a byte of work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from integrator import integrate
from lanes import claims, config, gc, saves, state, submit
from tests.conftest import LANES, commit_file, git, go_stale, lanes_json, origin_of, snapshot


def _stale(cfg: config.Config, wave: str, lane: str) -> None:
    go_stale(cfg, wave, lane)  # the heartbeat file's mtime, or the claim ref's commit time


def test_gc_saves_dirty_work_then_removes_the_worktree(cfg: config.Config, tmp_path: Path) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    sha = commit_file(wt, "src/committed.py", "c = 1\n")
    (wt / "src/app.py").write_text('"""The API, edited."""\n')
    (wt / "src/new_untracked.py").write_text("u = 2\n")
    (wt / "data").mkdir()
    (wt / "data/blob.bin").write_bytes(bytes(range(256)))
    (wt / "src/latin1.txt").write_bytes("caf\u00e9 cr\u00e8me\n".encode("latin-1"))
    _stale(cfg, "44", "a")

    report = gc.gc(cfg)

    assert [(a.lane, a.action) for a in report.actions] == [("a", "reap")]
    patch = Path(report.actions[0].saved_patch or "")
    assert patch.is_file() and patch.parent.parent.name == claims.ARCHIVE
    assert not wt.exists()
    assert git(cfg.main_checkout, "rev-parse", "lanes/44/a") == sha  # committed work kept
    assert state.lane_state(cfg, "44", "a") == "reaped"
    reap = claims.ledger(cfg, "44").events()[-1]
    assert reap.event == "reap" and reap.details["saved_patch"] == str(patch)

    # the patch brings every uncommitted byte back onto the lane's branch
    restore = tmp_path / "restore"
    git(cfg.main_checkout, "worktree", "add", "-q", str(restore), "lanes/44/a")
    git(restore, "apply", "--binary", str(patch))
    assert (restore / "src/app.py").read_text() == '"""The API, edited."""\n'
    assert (restore / "src/new_untracked.py").read_text() == "u = 2\n"
    assert (restore / "data/blob.bin").read_bytes() == bytes(range(256))
    assert (restore / "src/latin1.txt").read_bytes() == "caf\u00e9 cr\u00e8me\n".encode("latin-1")


def test_a_reaped_lane_can_be_claimed_again(cfg: config.Config) -> None:
    claims.claim(cfg, "44", "a", "agent-1")
    _stale(cfg, "44", "a")
    gc.gc(cfg)
    again = claims.claim(cfg, "44", "a", "agent-2")
    assert again.resumed and Path(again.worktree).is_dir()


def test_a_vanished_worktree_is_handled_and_its_branch_kept(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    sha = commit_file(wt, "src/x.py", "x = 1\n")
    shutil.rmtree(wt)  # a reboot emptied /tmp
    _stale(cfg, "44", "a")
    report = gc.gc(cfg)
    assert report.actions[0].worktree_vanished
    assert report.actions[0].saved_patch is None
    assert git(cfg.main_checkout, "rev-parse", "lanes/44/a") == sha
    assert str(wt) not in git(cfg.main_checkout, "worktree", "list")
    # and the lane's path is free again for a new claim
    assert Path(claims.claim(cfg, "44", "a", "agent-2").worktree).is_dir()


def test_live_and_submitted_lanes_are_left_alone(cfg: config.Config) -> None:
    claims.claim(cfg, "44", "live", "agent-1")
    claims.claim(cfg, "44", "done", "agent-2")
    claims.ledger(cfg, "44").append("submit", "done", "agent-2")
    _stale(cfg, "44", "done")
    assert gc.gc(cfg).actions == []
    assert cfg.claim_dir("44", "live").is_dir() and cfg.claim_dir("44", "done").is_dir()


def test_dry_run_changes_nothing(seed_repo: Path, cfg: config.Config, worktree_root: Path) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "dirty.txt").write_text("d\n")
    _stale(cfg, "44", "a")
    # On a remote, any read fetches the objects it reads and renders AGENT_LEDGER.md (caches
    # of the remote, docs/remote.md): read once, so what follows compares everything.
    assert lanes_json(seed_repo, "status", "44")[0] == 0
    bare = origin_of(seed_repo)
    before = snapshot(seed_repo, worktree_root, *([bare] if bare else []), skip=())
    rc, doc = lanes_json(seed_repo, "gc", "--dry-run")
    assert rc == 0
    assert doc["dry_run"] is True
    assert [(a["lane"], a["action"]) for a in doc["actions"]] == [("a", "reap")]
    assert snapshot(seed_repo, worktree_root, *([bare] if bare else []), skip=()) == before
    rc, doc = lanes_json(seed_repo, "gc")
    assert rc == 0 and doc["actions"][0]["saved_patch"]
    assert not wt.exists()


def test_leftovers_of_a_killed_claimer_are_swept(cfg: config.Config) -> None:
    claims.claim(cfg, "44", "a", "agent-1")
    wave_dir = cfg.wave_dir("44")
    old = wave_dir / ".claiming-b-deadbeef"
    old.mkdir()
    (old / "claim.json").write_text("{}")
    os.utime(old, (1, 1))
    young = wave_dir / ".claiming-c-cafe"
    young.mkdir()
    gc.gc(cfg)
    assert not old.exists()
    assert young.exists()  # it may be a claim being made right now
    assert cfg.claim_dir("44", "a").is_dir()


def test_a_worktree_never_filled_is_reaped_without_a_bogus_patch(cfg: config.Config) -> None:
    """A claimer killed between `worktree add --no-checkout` and the checkout."""
    claims.claim(cfg, "44", "a", "agent-1")
    wt = cfg.worktree_path("44", "a")
    git(cfg.main_checkout, "worktree", "remove", "--force", str(wt))
    git(cfg.main_checkout, "worktree", "add", "-q", "--no-checkout", str(wt), "lanes/44/a")
    _stale(cfg, "44", "a")
    report = gc.gc(cfg)
    assert report.actions[0].saved_patch is None
    assert not wt.exists()


def test_git_ignored_files_are_saved_too_except_big_ones(
    cfg: config.Config, tmp_path: Path
) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / ".gitignore").write_text("*.log\n.env\nbuild/\n")
    (wt / "notes.log").write_text("important\n")
    (wt / ".env").write_text("TOKEN=x\n")
    (wt / "build").mkdir()
    (wt / "build/huge.bin").write_bytes(b"\0" * (saves.IGNORED_FILE_LIMIT + 1))
    os.symlink("/etc/passwd", wt / "build/link")  # kept as a link, never followed
    _stale(cfg, "44", "a")

    report = gc.gc(cfg)

    reap = claims.ledger(cfg, "44").events()[-1]
    saved = Path(reap.details["saved_ignored"])
    assert [a.saved_ignored for a in report.actions] == [str(saved)]
    assert reap.details["ignored_not_saved"] == ["build/huge.bin"]
    with tarfile.open(saved) as tar:
        assert sorted(tar.getnames()) == [".env", "build/link", "notes.log"]
        tar.extractall(tmp_path / "back", filter="tar")
    assert (tmp_path / "back/notes.log").read_text() == "important\n"
    assert os.readlink(tmp_path / "back/build/link") == "/etc/passwd"
    assert ".gitignore" in Path(reap.details["saved_patch"]).read_text()  # untracked: the patch


def test_an_ignored_nested_repository_is_saved_file_by_file(cfg: config.Config) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / ".gitignore").write_text("vendor/\n")
    nested = wt / "vendor" / "lib"
    nested.mkdir(parents=True)
    git(nested, "init", "-q")
    (nested / "work.txt").write_text("hours of it\n")  # git lists only vendor/lib/
    result = claims.release(cfg, "44", "a")
    assert result.saved_ignored is not None
    with tarfile.open(result.saved_ignored) as tar:
        names = tar.getnames()
        assert "vendor/lib/work.txt" in names and "vendor/lib/.git/HEAD" in names
        member = tar.extractfile("vendor/lib/work.txt")
        assert member is not None and member.read() == b"hours of it\n"


def test_an_integrated_lane_loses_its_worktree_and_its_branch_once_all_of_it_landed(
    cfg: config.Config,
) -> None:
    done = Path(claims.claim(cfg, "44", "done", "agent-1").worktree)
    commit_file(done, "src/done.py", "d = 1\n")
    more = Path(claims.claim(cfg, "44", "more", "agent-2").worktree)
    commit_file(more, "src/more.py", "m = 1\n")
    for lane in ("done", "more"):
        submit.submit(cfg, "44", lane)
    assert integrate.integrate(cfg, "44").integrated == ["done", "more"]
    late = commit_file(more, "src/late.py", "after the submit\n")  # not landed: keep it

    dry = gc.gc(cfg, dry_run=True)
    assert [(a.lane, a.action) for a in dry.actions] == [
        ("done", "remove-worktree-and-branch"),
        ("more", "remove-worktree"),
    ]
    assert done.exists() and git(cfg.main_checkout, "branch", "--list", "lanes/44/done")

    gc.gc(cfg)
    assert not done.exists() and not more.exists()
    assert git(cfg.main_checkout, "branch", "--list", "lanes/44/done") == ""
    assert git(cfg.main_checkout, "rev-parse", "lanes/44/more") == late
    assert gc.gc(cfg).actions == []  # nothing left to do


def test_an_integrated_lane_whose_worktree_vanished_loses_its_branch_once(
    cfg: config.Config,
) -> None:
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    commit_file(wt, "src/a.py", "a = 1\n")
    submit.submit(cfg, "44", "a")
    integrate.integrate(cfg, "44")
    shutil.rmtree(wt)  # a reboot emptied /tmp
    assert [a.action for a in gc.gc(cfg).actions] == ["delete-branch"]
    assert git(cfg.main_checkout, "branch", "--list", "lanes/44/a") == ""
    assert gc.gc(cfg).actions == []


@pytest.mark.slow
def test_release_and_gc_racing_for_a_stale_lane_lose_nothing(
    seed_repo: Path, cfg: config.Config
) -> None:
    for round_ in range(6):
        lane = f"r{round_}"
        wt = Path(claims.claim(cfg, "44", lane, "agent-1").worktree)
        (wt / "src/app.py").write_text(f"dirty {round_}\n")
        _stale(cfg, "44", lane)
        racers = [
            subprocess.Popen([*LANES, *args, "--json"], cwd=seed_repo, stdout=subprocess.PIPE)
            for args in (("release", "44", lane), ("gc",), ("gc",))
        ]
        codes = [p.wait() for p in racers]
        for p in racers:
            assert p.stdout is not None
            p.stdout.close()
        assert codes[1:] == [0, 0] and codes[0] in (0, 4), codes  # 4: gc got there first
        rows = [e for e in claims.ledger(cfg, "44").events() if e.lane == lane]
        retired = [e for e in rows if e.event in ("release", "reap")]
        assert len(retired) == 1, [e.event for e in rows]
        patch = Path(retired[0].details["saved_patch"])
        assert f"+dirty {round_}" in patch.read_text()
        assert not wt.exists()


def test_small_ignored_files_are_kept_first_and_every_left_out_one_counted(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(saves, "IGNORED_TOTAL_LIMIT", 10_000)
    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / ".gitignore").write_text("node_modules/\nnotes.txt\n")
    (wt / "node_modules").mkdir()
    for i in range(30):  # sorted by name, these come before notes.txt
        (wt / "node_modules" / f"pkg{i:02d}.js").write_bytes(b"x" * 1_000)
    (wt / "notes.txt").write_text("the plan\n")
    result = claims.release(cfg, "44", "a")
    assert result.saved_ignored is not None
    with tarfile.open(result.saved_ignored) as tar:
        assert "notes.txt" in tar.getnames() and len(tar.getnames()) == 10
    row = claims.ledger(cfg, "44").events()[-1]
    assert (
        row.details["ignored_not_saved_count"] == 21 and len(row.details["ignored_not_saved"]) == 20
    )
    assert not list(Path(result.archived_to).glob("*.tmp"))


def test_a_lane_submitted_after_gc_read_the_ledger_is_not_reaped(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    _stale(cfg, "44", "a")
    before_submit = state.histories(cfg, "44")  # what gc read, an instant too early
    submit.submit(cfg, "44", "a")
    # gc's view of the ledger is the early one; the lane's own state is read afresh.
    early = SimpleNamespace(
        waves=state.waves, histories=lambda *_: before_submit, lane_state=state.lane_state
    )
    monkeypatch.setattr(gc, "state", early)
    assert gc.gc(cfg).actions == []
    assert state.lane_state(cfg, "44", "a") == "submitted"


# -- gc saves what is on disk, checks it, and goes on past a lane it cannot save ------------


def test_gc_reaps_a_lane_whose_index_was_emptied_saving_every_file(
    seed_repo: Path, cfg: config.Config, tmp_path: Path
) -> None:
    from tests.test_saves import on_disk, restored

    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "src/app.py").write_text("edited\n")
    (wt / "data.csv").write_text("1,2\n")
    git(wt, "rm", "-r", "-q", "--cached", ".")
    _stale(cfg, "44", "a")
    before = on_disk(wt)
    rc, doc = lanes_json(seed_repo, "gc")
    assert rc == 0 and [a["action"] for a in doc["actions"]] == ["reap"]
    reap = doc["actions"][0]
    assert reap["saved_patch"] and not wt.exists()
    back = restored(cfg, reap["saved_patch"], reap["saved_ignored"], "lanes/44/a", tmp_path / "b")
    assert on_disk(back) == before


def test_gc_goes_on_past_a_lane_it_cannot_save_and_names_it(
    seed_repo: Path, cfg: config.Config
) -> None:
    stuck = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    git(stuck, "switch", "-q", "--detach")
    commit_file(stuck, "src/only-here.py", "on no branch\n")
    nested = Path(claims.claim(cfg, "44", "b", "agent-2").worktree)
    (nested / "scratch").mkdir()
    git(nested / "scratch", "init", "-q")  # stopped the old gc at this lane
    (nested / "scratch/idea.md").write_text("mine\n")
    plain = Path(claims.claim(cfg, "44", "c", "agent-3").worktree)
    (plain / "src/app.py").write_text("edited\n")
    for lane in "abc":
        _stale(cfg, "44", lane)
    before = snapshot(stuck, skip=())

    proc = subprocess.run([*LANES, "gc", "--json"], cwd=seed_repo, capture_output=True, text=True)

    doc = json.loads(proc.stdout)
    assert (proc.returncode, doc["error"]) == (1, "gc-incomplete")
    assert [(f["lane"], f["error"]) for f in doc["failed"]] == [("a", "save-failed")]
    assert "on no branch" in doc["failed"][0]["message"] and "44/a" in doc["message"]
    assert [(a["lane"], a["action"]) for a in doc["actions"]] == [("b", "reap"), ("c", "reap")]
    assert doc["actions"][0]["saved_nested"] == ["scratch"]
    with tarfile.open(doc["actions"][0]["saved_ignored"]) as tar:
        assert {"scratch/idea.md", "scratch/.git/HEAD"} <= set(tar.getnames())
    assert not nested.exists() and not plain.exists()
    assert snapshot(stuck, skip=()) == before  # left exactly as it was, still claimed
    assert state.lane_state(cfg, "44", "a") == "claimed"


def test_gc_killed_while_removing_a_worktree_finishes_on_its_next_run(
    seed_repo: Path, cfg: config.Config, worktree_root: Path, tmp_path: Path
) -> None:
    from tests.test_saves import on_disk, restored

    wt = Path(claims.claim(cfg, "44", "a", "agent-1").worktree)
    (wt / "src/app.py").write_text("edited\n")
    _stale(cfg, "44", "a")
    before = on_disk(wt)
    env = {**os.environ, "LANES_FAILPOINT": "worktree-moved"}
    killed = subprocess.run([*LANES, "gc", "--json"], cwd=seed_repo, env=env, capture_output=True)
    assert killed.returncode == -9 and not wt.exists()
    assert state.lane_state(cfg, "44", "a") == "claimed"

    rc, doc = lanes_json(seed_repo, "gc")
    assert rc == 0 and [a["action"] for a in doc["actions"]] == ["reap"]
    reap = doc["actions"][0]
    assert reap["worktree_vanished"] and reap["saved_patch"]  # the save made before the kill
    assert not list(worktree_root.glob(".lanes-trash-*"))
    back = restored(cfg, reap["saved_patch"], reap["saved_ignored"], "lanes/44/a", tmp_path / "b")
    assert on_disk(back) == before
