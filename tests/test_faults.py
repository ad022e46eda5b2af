"""Faults of the disk, and of what is read back from it (issue 8, cases 8 and 9).

A full disk is a real one: a small tmpfs mounted for the test (the tests run as root, as
`make test` does here), filled with a filler file until the kernel says ENOSPC. Where a
tmpfs cannot be mounted the tests that need one fail, loudly, saying why: they never skip.
The scenario runs a second time with a file size limit (`RLIMIT_FSIZE`, SIGXFSZ ignored,
so writes fail with EFBIG), which needs no privilege.

Also here: a failed append between its row and its anchor, a torn row on a full disk, a
read-only filesystem, claim records and heartbeat times that lanes cannot believe, and a
heartbeat time in the future (docs/decisions.md, D32 and D33).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanes import claims, config, scaffold, state
from lanes.errors import OperationalError
from lanes.ledger import LEDGER_NAME, Ledger
from tests.conftest import LANES, commit_file

PAGE = 4096  # tmpfs allocates whole pages: a file's last page has room the disk has not
# The codes of a disk that fails: git's own failure when git met it, and release's or gc's
# when the work of a lane could not be saved before its worktree goes.
FAULT_CODES = {"disk-full", "io-failed", "git-failed", "save-failed"}


# -- a disk that can be filled ---------------------------------------------------------------


class Disk:
    """A mounted tmpfs that a filler file fills to the last byte, or to `leave` bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / ".filler"

    def fill(self, leave: int = 0) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for block in (1 << 20, 1 << 16, PAGE, 512, 1):
                data = b"\0" * block
                while True:
                    try:
                        os.write(fd, data)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC, exc
                        break
            if leave:
                size = os.fstat(fd).st_size
                os.ftruncate(fd, max(0, size - leave))
        finally:
            os.close(fd)
        assert self.room() <= leave + PAGE

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def room(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize


def _mount(where: Path, size: str) -> Disk:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {where}: {proc.stderr.strip() or proc.returncode}. "
            "The full-disk tests make a real full disk and need root (or CAP_SYS_ADMIN, "
            "e.g. docker run --cap-add SYS_ADMIN); they never skip.",
            pytrace=False,
        )
    return Disk(where)


def _unmount(disk: Disk) -> None:
    subprocess.run(["mount", "-o", "remount,rw", str(disk.root)], capture_output=True)
    if subprocess.run(["umount", str(disk.root)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(disk.root)], capture_output=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A 48 MiB tmpfs: room for the seed repository, its worktrees and the inbox."""
    mounted = _mount(tmp_path / "disk", "48m")
    try:
        yield mounted
    finally:
        _unmount(mounted)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Disk]:
    """A tiny tmpfs of its own, for one file or folder of the ledger."""
    mounted = _mount(tmp_path / "small", "256k")
    try:
        yield mounted
    finally:
        _unmount(mounted)


def seed_on(root: Path) -> tuple[Path, config.Config]:
    repo = scaffold.make_seed_repo(root / "jpcite", root / "wt")
    return repo, config.load(repo)


def lanes(cwd: Path, *args: str, fsize: int | None = None) -> tuple[int, dict[str, Any], str]:
    """Run the CLI as a user does, with --json; with `fsize`, under a file size limit
    (every process it starts, git included, inherits it)."""
    argv = [*LANES, *args, "--json"]
    if fsize is not None:
        limited = (
            "import os, resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize}))\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'lanes', *sys.argv[1:]])\n"
        )
        argv = [sys.executable, "-c", limited, *args, "--json"]
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    doc = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, doc, proc.stderr


def anchor_temps(cfg: config.Config) -> list[str]:
    folder = cfg.state_dir / "ledger"
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name) if folder.is_dir() else []


def assert_a_fault_not_a_bug(code: int, doc: dict[str, Any], stderr: str, what: str) -> None:
    """Exit 1 with the fault's own code, a message naming a path and a hint; never a bug."""
    assert code == 1, (what, code, doc, stderr)
    assert doc.get("error") in FAULT_CODES, (what, doc, stderr)
    assert "Traceback" not in stderr, (what, stderr)
    assert doc["hint"] and "/" in doc["message"], (what, doc)
    if doc["error"] in ("disk-full", "io-failed"):  # lanes' own write: the system's errno
        assert doc["errno"] in ("ENOSPC", "EFBIG", "EDQUOT", "EROFS", "EIO"), doc
        assert doc["path"], doc


# -- 1: every command on a disk that fills up -------------------------------------------------


@pytest.mark.parametrize("limit", ["tmpfs", "fsize"])
def test_every_command_on_a_disk_filling_up_fails_cleanly_and_loses_nothing(
    tmp_path: Path, limit: str
) -> None:
    """claim, heartbeat, fragment, submit and release while the room left shrinks to
    nothing (lanes claimed beforehand, and a fresh lane at each step): each command
    succeeds, or exits 1 with disk-full (or git-failed, when git met the full disk), never
    internal-error; what each said it did is what the ledger and the claim directories
    hold; once there is room again the ledger verifies and no temporary file of the ledger
    is left."""
    disk = _mount(tmp_path / "disk", "48m") if limit == "tmpfs" else None
    try:
        repo, cfg = seed_on(disk.root if disk else tmp_path)
        rooms = [1 << 23, 1 << 21, 1 << 19, 1 << 17, 1 << 15, 3 * PAGE, PAGE, 0, 0]
        limits = [1 << 20, 1 << 16, 1 << 14, 8000, 6000, 4096, 2048, 512, 0]
        for step in range(len(rooms)):
            assert lanes(repo, "claim", "44", f"p{step}", "--agent", "bot")[0] == 0
        said: dict[str, dict[str, int]] = {}
        faults: list[str] = []

        def run(name: str, lane: str, cwd: Path, *args: str, cap: int | None) -> int:
            code, doc, err = lanes(cwd, *args, fsize=cap)
            said.setdefault(lane, {})[name] = code
            if code != 0:
                assert_a_fault_not_a_bug(code, doc, err, f"{name} {lane} ({limit} {step})")
                faults.append(f"{name}:{doc['error']}")
            return code

        for step, (room, fsize) in enumerate(zip(rooms, limits, strict=True)):
            if disk:
                disk.free()
                disk.fill(leave=room)
            cap = None if disk else fsize
            fresh, held = f"n{step}", f"p{step}"
            if run("claim", fresh, repo, "claim", "44", fresh, "--agent", "bot", cap=cap) == 0:
                run("release", fresh, repo, "release", "44", fresh, cap=cap)
            run("heartbeat", held, repo, "heartbeat", "44", held, cap=cap)
            worktree = cfg.worktree_path("44", held)
            run("fragment", held, worktree, "fragment", "version", "patch", cap=cap)
            run("submit", held, repo, "submit", "44", held, cap=cap)
            if step % 2:
                run("release", held, repo, "release", "44", held, cap=cap)
        # On a full disk a heartbeat still works: it sets a time, and needs no space.
        code, doc, err = lanes(repo, "heartbeat", "44", "p0", fsize=None if disk else 0)
        assert code == 0, (doc, err)
        if disk:
            disk.free()
        failed = {f.split(":")[0] for f in faults}
        assert {"claim", "fragment", "submit"} <= failed, (faults, said)
        assert said["p0"] == {"heartbeat": 0, "fragment": 0, "submit": 0}, said

        code, doc, err = lanes(repo, "ledger", "verify", "44")
        assert (code, doc.get("ok")) == (0, True), (doc, err)
        events = claims.ledger(cfg, "44").events()
        for lane, outcome in said.items():
            rows = [ev.event for ev in events if ev.lane == lane]
            now = state.lane_state(cfg, "44", lane)
            if outcome.get("submit") == 0:
                assert "submit" in rows, (lane, outcome, rows)
            if outcome.get("submit") == 1:
                assert "submit" not in rows, (lane, outcome, rows)
            if outcome.get("release") == 0:
                assert "release" in rows and now == "released", (lane, outcome, rows)
                assert not cfg.claim_dir("44", lane).exists()
            if outcome.get("fragment") == 0:
                assert "fragment" in rows, (lane, outcome, rows)
        assert anchor_temps(cfg) == []
        code, doc, err = lanes(repo, "status", "44")
        assert code == 0, (doc, err)
        # With room again, every command works, and the anchor is level with the file.
        code, doc, err = lanes(repo, "claim", "44", "after", "--agent", "bot")
        assert code == 0, (doc, err)
        log = claims.ledger(cfg, "44")
        assert log.anchor() == (log.events()[-1].seq, log.events()[-1].chain)
        assert log.verify().ok
    finally:
        if disk:
            _unmount(disk)


def test_a_full_disk_is_disk_full_with_its_path_never_a_bug(disk: Disk) -> None:
    repo, cfg = seed_on(disk.root)
    disk.fill()
    code, doc, err = lanes(repo, "claim", "44", "a", "--agent", "bot")
    assert (code, doc["error"], doc["errno"]) == (1, "disk-full", "ENOSPC"), (doc, err)
    assert str(cfg.inbox) in doc["message"] and doc["path"]
    assert "df -h" in doc["hint"] and "traceback" not in doc
    assert "internal-error" not in err and "Traceback" not in err
    disk.free()
    assert lanes(repo, "claim", "44", "a", "--agent", "bot")[0] == 0


def test_a_read_only_disk_is_io_failed_naming_the_path(disk: Disk) -> None:
    repo, cfg = seed_on(disk.root)
    assert lanes(repo, "claim", "44", "a", "--agent", "bot")[0] == 0
    subprocess.run(["mount", "-o", "remount,ro", str(disk.root)], check=True)
    try:
        code, doc, err = lanes(repo, "claim", "44", "b", "--agent", "bot")
        assert (code, doc["error"], doc["errno"]) == (1, "io-failed", "EROFS"), (doc, err)
        assert "read-only" in doc["hint"] and doc["path"]
        code, doc, err = lanes(repo, "heartbeat", "44", "a")
        assert (code, doc["error"], doc["errno"]) == (1, "io-failed", "EROFS"), (doc, err)
        assert "heartbeat of 44/a was not recorded" in doc["message"]
        assert doc["path"] == str(cfg.claim_dir("44", "a") / claims.HEARTBEAT)
        # Reading still works: nobody can append to a read-only ledger, so verify needs
        # no lock there.
        assert lanes(repo, "status", "44")[0] == 0
        code, doc, err = lanes(repo, "ledger", "verify", "44")
        assert (code, doc.get("ok")) == (0, True), (doc, err)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk.root)], check=True)


# -- 2 and 3: the row is the commit point; the anchor follows it ------------------------------


def _room_in_last_page(log: Ledger, at_least: int) -> None:
    """Append rows until the ledger's last page has `at_least` bytes free (tmpfs gives a
    row that fits there a place even when the disk is full; a new anchor never fits)."""
    for i in range(200):
        size = log.path.stat().st_size
        if size % PAGE and PAGE - size % PAGE >= at_least:
            return
        log.append("verify", note=f"padding {i}")
    raise AssertionError("the ledger never left room in its last page")


def test_a_submit_recorded_on_a_full_disk_exits_0_and_says_what_did_not_follow(
    disk: Disk,
) -> None:
    repo, cfg = seed_on(disk.root)
    for lane in ("a", "b"):
        assert lanes(repo, "claim", "44", lane, "--agent", "bot")[0] == 0
        commit_file(cfg.worktree_path("44", lane), f"src/{lane}.py", "x = 1\n")
    log = claims.ledger(cfg, "44")
    _room_in_last_page(log, 1500)
    disk.fill()

    code, doc, err = lanes(repo, "submit", "44", "a")
    assert code == 0, (doc, err)  # the row is written: the lane is submitted
    assert any("submit event is recorded" in w and "anchor" in w for w in doc["warnings"]), doc
    assert state.lane_state(cfg, "44", "a") == "submitted"
    assert lanes(repo, "ledger", "verify", "44")[1]["ok"] is True

    # The anchor is one row behind: it cannot be brought forward, so no row is written.
    code, doc, err = lanes(repo, "submit", "44", "b")
    assert (code, doc["error"], doc["recorded"]) == (1, "disk-full", False), (doc, err)
    assert "the submit event was not recorded" in doc["message"]
    assert state.lane_state(cfg, "44", "b") == "claimed"
    assert lanes(repo, "ledger", "verify", "44")[1]["ok"] is True

    disk.free()
    code, doc, err = lanes(repo, "submit", "44", "b")
    assert (code, doc["warnings"]) == (0, []), (doc, err)
    assert lanes(repo, "ledger", "verify", "44")[1]["ok"] is True
    assert log.anchor() == (log.events()[-1].seq, log.events()[-1].chain)
    assert anchor_temps(cfg) == []


def test_appends_failing_after_their_row_never_leave_the_anchor_two_behind(
    tmp_path: Path, small: Disk
) -> None:
    """The anchor's folder on a full disk, the ledger on another: each row can be written,
    no anchor can. Before, two such appends left the anchor two rows behind, and verify
    reported rows "appended without lanes"."""
    log = Ledger(tmp_path / "inbox" / "44" / LEDGER_NAME, "44", small.root / "state")
    for i in range(3):
        log.append("claim", f"l{i}", "bot")
    small.fill()

    first = log.append("submit", "l0", "bot")
    assert first.seq == 4 and any("anchor" in w for w in first.warnings)
    assert log.anchor() == (3, log.events()[2].chain)
    with pytest.raises(OperationalError) as caught:
        log.append("submit", "l1", "bot")
    assert caught.value.code == "disk-full" and caught.value.extra["recorded"] is False
    assert [ev.seq for ev in log.events()] == [1, 2, 3, 4]
    assert log.verify().ok  # one row past the anchor, chained: lanes' own
    assert list((small.root / "state" / "ledger").glob("*.tmp*")) == []

    small.free()
    assert log.verify().ok
    assert log.anchor() == (4, first.chain)  # verify brought it level
    fifth = log.append("submit", "l1", "bot")
    assert (fifth.seq, fifth.warnings, log.anchor()) == (5, (), (5, fifth.chain))


def test_the_first_append_stopped_before_its_anchor_is_not_a_missing_anchor(
    tmp_path: Path, small: Disk
) -> None:
    log = Ledger(tmp_path / "inbox" / "44" / LEDGER_NAME, "44", small.root / "state")
    (small.root / "state" / "ledger").mkdir(parents=True)
    small.fill()
    first = log.append("claim", "a", "bot")
    assert first.seq == 1 and first.warnings and log.anchor() is None
    assert log.verify().ok
    small.free()
    assert log.append("claim", "b", "bot").warnings == ()
    assert log.anchor() == (2, log.events()[-1].chain) and log.verify().ok


def test_a_row_that_does_not_fit_is_cut_back_never_left_torn(tmp_path: Path, small: Disk) -> None:
    """The ledger on a full disk with less room in its last page than a row: the write is
    short. Before, the torn part stayed in the file (a short-write error); now the file is
    cut back to what it was, and the error says nothing was recorded."""
    log = Ledger(small.root / "inbox" / "44" / LEDGER_NAME, "44", tmp_path / "state")
    log.append("claim", "a", "bot")

    def room() -> int:
        return PAGE - log.path.stat().st_size % PAGE

    for _ in range(10):  # leave about 70 bytes in the last page: less than any row
        if 20 <= room() <= 120:
            break
        size = log.path.stat().st_size
        log.append("verify", note="")
        row = log.path.stat().st_size - size  # a row's length with an empty note
        want = room() - 70  # what the next row must take: a note of `want - row` bytes
        if 20 <= room() <= 120 or want < row:
            continue  # there, or too little room left for a row: the next page then
        log.append("verify", note="x" * (want - row))
    assert 20 <= room() <= 120, room()
    small.fill()
    before = log.path.read_bytes()
    with pytest.raises(OperationalError) as caught:
        log.append("submit", "a", "bot", note="a row longer than the room that is left")
    assert caught.value.code == "disk-full" and caught.value.extra["recorded"] is False
    assert log.path.read_bytes() == before
    assert log.verify().ok
    small.free()
    assert log.append("submit", "a", "bot").seq == len(log.events())
    assert log.verify().ok


# -- 5: what is read back from disk is validated ----------------------------------------------


def _edit_record(cfg: config.Config, which: str, /, **changes: Any) -> None:
    path = cfg.claim_dir("44", which) / claims.RECORD
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


@pytest.mark.local_coord  # edits the claim dirs' records and heartbeat files
def test_status_shows_a_lane_whose_files_cannot_be_believed_and_gc_leaves_it(
    seed_repo: Path, cfg: config.Config
) -> None:
    for lane in "abcdef":
        claims.claim(cfg, "44", lane, "bot")
    _edit_record(cfg, "a", time="yesterday")  # before: status crashed (internal-error)
    (cfg.claim_dir("44", "b") / claims.HEARTBEAT).write_bytes(b"\xff\x00garbage\n")
    (cfg.claim_dir("44", "c") / claims.RECORD).write_text("{not json")
    # A record that points at another lane's worktree: before, gc reaped it and removed
    # the live worktree of lane e.
    _edit_record(cfg, "d", worktree=str(cfg.worktree_path("44", "e")))
    hb_f = cfg.claim_dir("44", "f") / claims.HEARTBEAT
    hb_f.unlink()
    os.symlink("/etc/hostname", hb_f)  # not lanes' file, and it is old

    proc = subprocess.run(
        [*LANES, "status", "44", "--json"], cwd=seed_repo, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["lane"]: r for r in json.loads(proc.stdout)["lanes"]}
    assert sorted(rows) == list("abcdef")
    assert rows["a"]["state"] == "claimed" and rows["a"]["age_seconds"] is None
    assert any("'yesterday' is not an ISO 8601 time" in p for p in rows["a"]["problems"])
    assert rows["b"]["problems"] == [] and rows["b"]["heartbeat_age_seconds"] is not None
    assert any("is not JSON" in p for p in rows["c"]["problems"])
    assert any("gc does not reap it" in p for p in rows["c"]["problems"])
    assert any("not a worktree path of this lane" in p for p in rows["d"]["problems"])
    assert any("not a regular file" in p for p in rows["f"]["problems"])
    human = subprocess.run([*LANES, "status", "44"], cwd=seed_repo, capture_output=True, text=True)
    assert human.returncode == 0, human.stderr

    # Everything stale by its heartbeat: gc reaps the lanes it can believe, only those.
    for lane in "abde":
        os.utime(cfg.claim_dir("44", lane) / claims.HEARTBEAT, (1, 1))
    os.utime(cfg.claim_dir("44", "c") / claims.HEARTBEAT, (1, 1))
    proc = subprocess.run([*LANES, "gc", "--json"], cwd=seed_repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    reaped = sorted(a["lane"] for a in json.loads(proc.stdout)["actions"])
    assert reaped == ["a", "b", "e"]
    for lane in "cdf":  # kept as they are, worktrees included
        assert cfg.claim_dir("44", lane).is_dir()
        assert cfg.worktree_path("44", lane).is_dir()
    assert claims.ledger(cfg, "44").verify().ok


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("lane", "other", "names the lane"),
        ("branch", "main", "is not the lane's"),
        ("worktree", "relative/path-44-a", "not a worktree path"),
        ("base", "HEAD", "is not a commit id"),
        ("pid", "12", 'pid is "12", not of type int'),
        ("agent", "a b", "invalid agent"),
        ("sparse", ["../up"], "invalid --sparse"),
        ("extra", 1, "does not write: extra"),
    ],
)
def test_a_claim_record_is_checked_as_strictly_as_lanes_writes_it(
    cfg: config.Config, field: str, value: Any, why: str
) -> None:
    claims.claim(cfg, "44", "a", "bot")
    claim_dir = cfg.claim_dir("44", "a")
    assert claims.read_record(claim_dir) is not None
    _edit_record(cfg, "a", **{field: value})
    problems: list[str] = []
    assert claims.read_record(claim_dir, problems) is None
    assert len(problems) == 1 and why in problems[0], problems


# -- 6: a heartbeat in the future (D32) -------------------------------------------------------


def test_a_heartbeat_in_the_future_counts_from_when_it_was_written(cfg: config.Config) -> None:
    claims.claim(cfg, "44", "a", "bot")
    claim_dir = cfg.claim_dir("44", "a")
    hb = claim_dir / claims.HEARTBEAT
    now = time.time()
    os.utime(hb, (now + 60, now + 60))  # a little ahead: counts as now
    assert claims.heartbeat_age(claim_dir, now) == 0.0
    os.utime(hb, (now + 86400, now + 86400))  # a day ahead: set by hand
    problems: list[str] = []
    later = time.time() + 3600  # an hour after it was written
    age = claims.heartbeat_age(claim_dir, later, problems)
    # Before: -82800, never stale. Now: its age since it was written, an hour.
    assert age is not None and 3590 < age < 3700, age
    assert age > cfg.stale_after_seconds
    assert "in the future" in problems[0] and "counted from when it was written" in problems[0]
    # This clock behind the moment it was written too: it went back; not judged.
    problems.clear()
    assert claims.heartbeat_age(claim_dir, time.time() - 3600, problems) is None
    assert "clock went back" in problems[0]
    claims.heartbeat(cfg, "44", "a")  # the holder beats: the time is believed again
    assert claims.heartbeat_age(claim_dir, time.time() + 1) is not None
    assert hb.stat().st_mtime <= time.time()


@pytest.mark.local_coord  # a heartbeat file's mtime and ctime (D32)
def test_gc_reaps_a_lane_whose_heartbeat_was_set_in_the_future(seed_repo: Path) -> None:
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('stale_after = "30m"', 'stale_after = "2s"'))
    cfg = config.load(seed_repo)
    assert cfg.stale_after_seconds == 2
    claims.claim(cfg, "44", "a", "bot")
    claims.claim(cfg, "44", "b", "bot")
    year_ahead = time.time() + 365 * 86400
    os.utime(cfg.claim_dir("44", "a") / claims.HEARTBEAT, (year_ahead, year_ahead))
    time.sleep(3)  # real time must pass: a file's ctime cannot be set
    claims.heartbeat(cfg, "44", "b")  # b is alive, on a clock a little ahead: a heartbeat
    soon = time.time() + 240  # up to 5 minutes ahead counts as now, however slow the
    os.utime(cfg.claim_dir("44", "b") / claims.HEARTBEAT, (soon, soon))  # machine is
    proc = subprocess.run(
        [*LANES, "status", "44", "--json"], cwd=seed_repo, capture_output=True, text=True
    )
    rows = {r["lane"]: r for r in json.loads(proc.stdout)["lanes"]}
    assert rows["a"]["stale"] and not rows["b"]["stale"]
    assert any("in the future" in p for p in rows["a"]["problems"])
    proc = subprocess.run([*LANES, "gc", "--json"], cwd=seed_repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [a["lane"] for a in json.loads(proc.stdout)["actions"]] == ["a"]
    assert state.lane_state(cfg, "44", "a") == "reaped"


def test_a_heartbeat_file_removed_or_replaced_is_made_again(cfg: config.Config) -> None:
    claims.claim(cfg, "44", "a", "bot")
    hb = cfg.claim_dir("44", "a") / claims.HEARTBEAT
    hb.unlink()
    problems: list[str] = []
    assert claims.heartbeat_age(hb.parent, None, problems) is None and "missing" in problems[0]
    claims.heartbeat(cfg, "44", "a")
    assert hb.is_file() and not hb.is_symlink()
    target = hb.parent.parent / "elsewhere"
    target.write_text("x")
    os.utime(target, (1, 1))
    hb.unlink()
    os.symlink(target, hb)
    claims.heartbeat(cfg, "44", "a")  # never through the symlink
    assert hb.is_file() and not hb.is_symlink() and target.stat().st_mtime == 1
