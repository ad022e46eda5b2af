"""Setup on every claim: copies of git-ignored files, links, commands; all or nothing."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lanes import claims, config, ports, setup, state
from lanes.errors import BadInput
from tests.conftest import commit_file, git, lanes_json, run_lanes, settle, snapshot


def configure(repo: Path, **keys: object) -> None:
    """Write [tool.lanes.setup] into the seed's pyproject.toml (the config read from disk)."""
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8").split("\n[tool.lanes.setup]\n")[0]
    lines = [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    pyproject.write_text(text + "\n[tool.lanes.setup]\n" + "\n".join(lines) + "\n")


def ignore(repo: Path, *patterns: str) -> None:
    """Commit ignore rules, so lanes (branched from main) ignore the same files."""
    gitignore = repo / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "".join(p + "\n" for p in patterns))
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore " + " ".join(patterns))


def claim(repo: Path, lane: str = "a", wave: str = "w1") -> tuple[int, dict]:  # type: ignore[type-arg]
    return lanes_json(repo, "claim", wave, lane, "--agent", "agent-1")


def regular_files(root: Path) -> dict[str, bytes]:
    """Every regular file under `root`, never through a symlink."""
    found = {}
    for here, _dirs, files in os.walk(root):
        for name in files:
            path = Path(here, name)
            if not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


def gone(pid: int) -> bool:
    """The process is dead (a zombie waiting for init to reap it counts), within 5 s."""
    for _ in range(100):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)
        except FileNotFoundError:
            return True
        if fields[1].startswith(("Z", "X")):
            return True
        time.sleep(0.05)
    return False


def test_an_ignored_env_and_a_2000_file_folder_arrive_in_the_worktree(seed_repo: Path) -> None:
    ignore(seed_repo, ".env", "data/")
    (seed_repo / ".env").write_text("SECRET=main\n")
    (seed_repo / ".env").chmod(0o600)
    data = seed_repo / "data"
    for i in range(2000):
        folder = data / f"d{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i}.txt").write_text(f"file {i}\n")
    (data / "d00" / "tool.sh").write_text("#!/bin/sh\n")
    (data / "d00" / "tool.sh").chmod(0o755)
    configure(seed_repo, copy=[".env", "data"])

    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    wt = Path(doc["worktree"])
    assert (wt / ".env").read_text() == "SECRET=main\n"
    assert stat.S_IMODE((wt / ".env").stat().st_mode) == 0o600
    assert regular_files(wt / "data") == regular_files(data)
    assert os.access(wt / "data" / "d00" / "tool.sh", os.X_OK)
    assert doc["setup"]["copied"] == 2002
    assert doc["setup"]["skipped_count"] == 0
    # Copies, not links: an edit in the lane stays in the lane.
    (wt / ".env").write_text("SECRET=lane\n")
    assert (seed_repo / ".env").read_text() == "SECRET=main\n"
    assert os.stat(wt / "data" / "d00" / "f0.txt").st_ino != os.stat(data / "d00" / "f0.txt").st_ino
    assert git(wt, "status", "--porcelain") == ""  # nothing the lane would commit
    assert doc["port"] is None and doc["ports"] == []


def test_a_tracked_file_is_never_copied_nor_overwritten(seed_repo: Path) -> None:
    ignore(seed_repo, "cache/", "local.cfg")
    (seed_repo / "local.cfg").write_text("committed\n")
    git(seed_repo, "add", "-f", "local.cfg")  # ignored, but tracked all the same
    (seed_repo / "cache").mkdir()
    (seed_repo / "cache" / "pinned.txt").write_text("committed\n")
    git(seed_repo, "add", "-f", "cache/pinned.txt")
    git(seed_repo, "commit", "-q", "-m", "force-add pinned.txt")
    (seed_repo / "cache" / "pinned.txt").write_text("edited in main\n")  # tracked: never copied
    (seed_repo / "cache" / "free.txt").write_text("ignored\n")
    git(seed_repo, "rm", "-q", "--cached", "local.cfg")  # untracked here, tracked in the lane
    (seed_repo / "local.cfg").write_text("main's own\n")
    configure(seed_repo, copy=["cache", "local.cfg"])

    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    wt = Path(doc["worktree"])
    assert (wt / "cache" / "pinned.txt").read_text() == "committed\n"
    assert (wt / "local.cfg").read_text() == "committed\n"
    assert (wt / "cache" / "free.txt").read_text() == "ignored\n"
    skipped = {s["path"]: s["reason"] for s in doc["setup"]["skipped"]}
    assert "not git-ignored in the lane" in skipped["local.cfg"]
    assert git(wt, "status", "--porcelain") == ""


def test_a_copy_pattern_that_brings_nothing_is_named(seed_repo: Path) -> None:
    """A typo (config/locl.yaml) or a tracked file in `copy`, a .worktreeinclude line that
    matches nothing: each is listed in the claim's setup.skipped and in setup.log."""
    ignore(seed_repo, ".env")
    (seed_repo / ".env").write_text("main\n")
    (seed_repo / ".worktreeinclude").write_text("*.nothing-here\n")
    configure(seed_repo, copy=[".env", "config/locl.yaml", "src/app.py"])
    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    skipped = {s["path"]: s["reason"] for s in doc["setup"]["skipped"]}
    assert set(skipped) == {"/config/locl.yaml", "/src/app.py", "*.nothing-here"}, skipped
    assert all("matches no untracked file" in why for why in skipped.values())
    log = Path(doc["claim_dir"], "setup.log").read_text()
    assert "skipped /config/locl.yaml" in log and "skipped *.nothing-here" in log
    assert (Path(doc["worktree"]) / ".env").read_text() == "main\n"
    # nothing at all to copy: every pattern named
    configure(seed_repo, copy=["missing"])
    (seed_repo / ".worktreeinclude").unlink()
    assert run_lanes(seed_repo, "release", "w1", "a").returncode == 0
    rc, doc = claim(seed_repo, "b")
    assert rc == 0, doc
    assert [s["path"] for s in doc["setup"]["skipped"]] == ["/missing"]


def test_a_file_the_worktree_has_is_never_overwritten(seed_repo: Path) -> None:
    """A kept worktree claimed again: the lane's own edits stay."""
    ignore(seed_repo, ".env")
    (seed_repo / ".env").write_text("main\n")
    configure(seed_repo, copy=[".env"])
    rc, doc = claim(seed_repo)
    wt = Path(doc["worktree"])
    (wt / ".env").write_text("the lane's edit\n")
    assert run_lanes(seed_repo, "release", "w1", "a", "--keep-worktree").returncode == 0
    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    assert (wt / ".env").read_text() == "the lane's edit\n"
    assert doc["setup"]["skipped"] == [
        {"path": ".env", "reason": "exists in the worktree: left as it is"}
    ]


def test_a_symlink_out_of_the_checkout_is_never_followed(seed_repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.txt").write_text("outside secret\n")
    (outside / "deep" / "more.txt").write_text("outside secret too\n")
    before = snapshot(outside, skip=())
    ignore(seed_repo, "cache/", ".env")
    (seed_repo / ".env").write_text("env\n")
    cache = seed_repo / "cache"
    cache.mkdir()
    (cache / "own.txt").write_text("own\n")
    (cache / "outdir").symlink_to(outside)  # a folder out of the checkout
    (cache / "secret").symlink_to(outside / "secret.txt")
    (cache / "climb").symlink_to(os.path.relpath(outside / "secret.txt", cache))
    (cache / "env").symlink_to("../.env")  # into the checkout
    configure(seed_repo, copy=["cache", ".env"])

    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    wt = Path(doc["worktree"])
    copied = regular_files(wt)
    assert not any(b"outside secret" in content for content in copied.values())
    assert (wt / "cache" / "own.txt").read_text() == "own\n"
    # links are made again as links: out of the checkout to the very place they point at
    # from the main checkout, absolute (a relative one would resolve elsewhere from /tmp)
    assert os.readlink(wt / "cache" / "outdir") == str(outside)
    assert os.readlink(wt / "cache" / "secret") == str(outside / "secret.txt")
    assert os.readlink(wt / "cache" / "climb") == str(outside / "secret.txt")
    # into the checkout: relative, so it points at the worktree's own copy
    assert os.readlink(wt / "cache" / "env") == "../.env"
    (wt / ".env").write_text("lane\n")
    assert (wt / "cache" / "env").read_text() == "lane\n"
    assert snapshot(outside, skip=()) == before
    assert git(wt, "status", "--porcelain") == ""


def test_link_makes_an_absolute_symlink_that_git_ignores(seed_repo: Path) -> None:
    ignore(seed_repo, "node_modules/")  # a folder rule: it would not ignore a symlink itself
    (seed_repo / "node_modules" / "left-pad").mkdir(parents=True)
    (seed_repo / "node_modules" / "left-pad" / "index.js").write_text("pad\n")
    (seed_repo / "src" / "cache").mkdir()  # not ignored: never linked
    (seed_repo / "node_modules" / "left-pad" / ".env").write_text("inside\n")
    (seed_repo / ".worktreeinclude").write_text(".env\n")  # matches in node_modules too
    configure(seed_repo, link=["node_modules", "src/cache", "not-there"])

    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    wt = Path(doc["worktree"])
    link = wt / "node_modules"
    assert link.is_symlink() and os.readlink(link) == str(seed_repo / "node_modules")
    assert (link / "left-pad" / "index.js").read_text() == "pad\n"
    assert not (wt / "src" / "cache").exists()
    assert not (wt / "not-there").exists()
    assert doc["setup"]["linked"] == ["node_modules"]
    reasons = {s["path"]: s["reason"] for s in doc["setup"]["skipped"]}
    assert "not git-ignored" in reasons["src/cache"]
    assert "not in the main checkout" in reasons["not-there"]
    assert "inside a linked folder" in reasons["node_modules/left-pad/.env"]
    assert git(wt, "status", "--porcelain") == ""  # the link is not something to commit


def test_commands_run_in_order_in_the_worktree_with_the_lanes_env(
    seed_repo: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.txt"
    configure(
        seed_repo,
        commands=[
            f'echo "1 $LANES_WAVE $LANES_LANE $LANES_WORKTREE $LANES_BASE $LANES_PORT $PWD" >> {trace}',
            f"echo 2 >> {trace}; echo to-stdout; echo to-stderr >&2",
        ],
        ports=2,
        port_range="23000-23009",
    )
    rc, doc = lanes_json(seed_repo, "claim", "w1", "a", "--agent", "agent-1")
    assert rc == 0, doc
    wt = doc["worktree"]
    first, second = trace.read_text().splitlines()
    assert first.split() == ["1", "w1", "a", wt, doc["base"], "23000", wt]
    assert second == "2"
    assert (doc["port"], doc["ports"]) == (23000, [23000, 23001])
    log = Path(doc["claim_dir"], setup.LOG).read_text()
    assert log.index("$ echo 2") < log.index("to-stdout") < log.index("to-stderr")
    assert log.count("exit 0 after") == 2 and log.rstrip().endswith("setup complete")
    assert doc["setup"]["log"] == str(Path(doc["claim_dir"], setup.LOG))


def test_a_failing_setup_command_leaves_the_lane_unheld(seed_repo: Path, tmp_path: Path) -> None:
    cfg = config.load(seed_repo)
    ignore(seed_repo, ".env")
    (seed_repo / ".env").write_text("x\n")
    configure(
        seed_repo,
        copy=[".env"],
        commands=["echo preparing", "echo it broke >&2; exit 3", "echo never"],
        ports=1,
        port_range="24000-24000",
    )
    rc, doc = claim(seed_repo)
    assert rc == 1
    assert doc["error"] == "setup-failed"
    assert "'echo it broke >&2; exit 3'" in doc["message"] and "exited with 3" in doc["message"]
    assert "it broke" in doc["message"]
    assert (doc["command"], doc["exit_code"], doc["step"]) == (
        "echo it broke >&2; exit 3",
        3,
        "command",
    )
    assert "it broke" in doc["output"]
    log = Path(doc["log"]).read_text()  # kept, out of the claim dir that was undone
    assert "preparing" in log and "it broke" in log and "never" not in log
    # not held: no claim, no worktree, no branch, the port free, the ledger agreeing
    wt = cfg.worktree_path("w1", "a")
    assert not wt.exists() and not cfg.claim_dir("w1", "a").exists()
    assert git(seed_repo, "branch", "--list", "lanes/w1/a") == ""
    assert "jpcite-w1-a" not in git(seed_repo, "worktree", "list")
    rc, status = lanes_json(seed_repo, "status", "w1")
    assert [
        row for row in status["lanes"] if row["lane"] == "a" and row["state"] == "claimed"
    ] == []
    events = claims.ledger(cfg, "w1").events()
    assert [(e.event, e.details.get("reason")) for e in events] == [
        ("claim-refused", "setup-failed")
    ]
    assert events[0].details["command"] == "echo it broke >&2; exit 3"
    assert claims.ledger(cfg, "w1").verify().ok
    assert "a" not in state.histories(cfg, "w1")
    assert ports.live(cfg) == []
    # once fixed, the lane can be claimed, and gets the one port again
    configure(seed_repo, copy=[".env"], commands=["echo fixed"], ports=1, port_range="24000-24000")
    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    assert doc["port"] == 24000 and Path(doc["worktree"], ".env").is_file()


def test_a_failing_setup_keeps_a_resumed_lanes_branch(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    rc, doc = claim(seed_repo)
    tip = commit_file(Path(doc["worktree"]), "src/work.py", "work\n")
    assert run_lanes(seed_repo, "release", "w1", "a").returncode == 0
    configure(seed_repo, commands=["exit 9"])
    rc, doc = claim(seed_repo)
    assert (rc, doc["error"], doc["exit_code"]) == (1, "setup-failed", 9)
    assert git(seed_repo, "rev-parse", "lanes/w1/a") == tip  # the lane's work is kept
    assert not cfg.worktree_path("w1", "a").exists()
    assert not cfg.claim_dir("w1", "a").exists()


BAD_SETUP = [
    ('copy = ["/etc/passwd"]', "setup.copy"),
    ('copy = ["../outside"]', "setup.copy"),
    ('copy = ["a/../../b"]', "setup.copy"),
    ('copy = [".git/config"]', "setup.copy"),
    ('copy = ["!negated"]', "setup.copy"),
    ('link = ["/abs"]', "setup.link"),
    ('link = ["node_*"]', "setup.link"),
    ('link = ["x"]\ncopy = ["x"]', "also in copy"),
    ('commands = [""]', "setup.commands"),
    ("ports = -1", "setup.ports"),
    ('ports = "3"', "setup.ports"),
    ("ports = true", "setup.ports"),
    ('port_range = "30000-20000"', "setup.port_range"),
    ('port_range = "0-10"', "setup.port_range"),
    ('port_range = "1-70000"', "setup.port_range"),
    ('port_range = "many"', "setup.port_range"),
    ('ports = 20\nport_range = "20000-20009"', "ports = 20"),
    ('copi = [".env"]', "setup.copi"),
]


def _write_setup(repo: Path, section: str) -> None:
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.lanes.setup]\n" + section + "\n")


@pytest.mark.parametrize(("section", "named"), BAD_SETUP)
def test_bad_setup_values_are_refused_naming_the_key(
    seed_repo: Path, section: str, named: str
) -> None:
    _write_setup(seed_repo, section)
    with pytest.raises(BadInput) as info:
        config.load(seed_repo)
    assert info.value.code == "bad-config"
    assert named in info.value.message, info.value.message


@pytest.mark.parametrize(("section", "named"), [BAD_SETUP[0], BAD_SETUP[10], BAD_SETUP[16]])
def test_a_claim_with_bad_setup_values_exits_2_and_changes_nothing(
    seed_repo: Path, worktree_root: Path, section: str, named: str
) -> None:
    _write_setup(seed_repo, section)
    before = snapshot(seed_repo, worktree_root, skip=())
    rc, doc = claim(seed_repo)
    assert (rc, doc["error"]) == (2, "bad-config")
    assert named in doc["message"], doc["message"]
    assert snapshot(seed_repo, worktree_root, skip=()) == before


def test_worktreeinclude_adds_gitignore_patterns(seed_repo: Path, worktree_root: Path) -> None:
    ignore(seed_repo, "secrets/", ".env*")
    (seed_repo / "secrets").mkdir()
    for name in ("a.key", "b.key", "public.key", "notes.txt"):
        (seed_repo / "secrets" / name).write_text(name)
    (seed_repo / ".env.local").write_text("local\n")
    (seed_repo / ".worktreeinclude").write_text(
        "# what a lane needs\n\nsecrets/*.key\n!secrets/public.key\n  .env.local  \n"
    )
    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    wt = Path(doc["worktree"])
    assert sorted(p.name for p in (wt / "secrets").iterdir()) == ["a.key", "b.key"]
    assert (wt / ".env.local").read_text() == "local\n"

    (seed_repo / ".worktreeinclude").write_bytes(b"\xff\xfe not utf-8\n")
    settle(seed_repo, "w1")  # on a remote, the caches any read refreshes
    before = snapshot(seed_repo, worktree_root, skip=())
    rc, doc = claim(seed_repo, "b")
    assert (rc, doc["error"]) == (2, "bad-config") and ".worktreeinclude" in doc["message"]
    assert snapshot(seed_repo, worktree_root, skip=()) == before


def test_a_claim_without_setup_runs_no_setup_and_no_extra_git(
    seed_repo: Path, tmp_path: Path
) -> None:
    """Agents claim often: no [setup] and no .worktreeinclude cost no import, no git call."""
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "git-calls.txt"
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    (shim / "git").write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    # The wave's first claim starts its ledger (on a remote: no tip to read yet), and on a
    # remote a claim reads every claim of the wave: the two compared below are both later
    # ones, each with one other lane held.
    claims.claim(config.load(seed_repo), "w1", "first", "agent-0")
    code = (
        "import sys; from pathlib import Path; from lanes import claims, config; "
        "claims.claim(config.load(Path.cwd()), 'w1', 'a', 'agent-1'); "
        "print(sorted(m for m in ('lanes.setup', 'lanes.ports') if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=seed_repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    made = calls.read_text()
    assert "check-ignore" not in made and "--ignored" not in made
    before = len(made.splitlines())
    claims.release(config.load(seed_repo), "w1", "first")
    # the same claim with a setup: the setup's git calls are exactly two
    ignore(seed_repo, ".env")
    (seed_repo / ".env").write_text("x\n")
    configure(seed_repo, copy=[".env"])
    calls.unlink()
    code = code.replace("'a'", "'b'")
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=seed_repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['lanes.setup']"
    assert len(calls.read_text().splitlines()) == before + 2


def test_a_commands_output_is_kept_bounded(seed_repo: Path) -> None:
    big = f"{sys.executable} -c \"import sys; [print('line', i) for i in range(100000)]; print('THE END')\""
    configure(seed_repo, commands=[big])
    rc, doc = claim(seed_repo)
    assert rc == 0, doc
    log = Path(doc["claim_dir"], setup.LOG)
    assert log.stat().st_size < setup.LOG_HEAD + setup.LOG_TAIL + 4096
    text = log.read_text()
    assert "line 0\n" in text and "THE END" in text and "bytes of output not kept" in text


def test_a_background_process_holding_the_output_does_not_hang_the_claim(
    seed_repo: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    configure(seed_repo, commands=[f"sleep 60 & echo $! > {pid_file}"])
    proc = subprocess.run(
        [sys.executable, "-m", "lanes", "claim", "w1", "a", "--agent", "x", "--json"],
        cwd=seed_repo,
        capture_output=True,
        text=True,
        timeout=30,
    )
    try:
        assert proc.returncode == 0, proc.stderr
    finally:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_command_past_the_time_limit_is_stopped_with_its_group(
    cfg: config.Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Core: the limit (an hour) made short; the command and its children are stopped."""
    monkeypatch.setattr(setup, "COMMAND_TIMEOUT", 1.0)
    worktree, claim_dir = tmp_path / "wt-x", tmp_path / "claim"
    worktree.mkdir()
    claim_dir.mkdir()
    pid_file = tmp_path / "child"
    todo = setup.Plan([], [], [f"sleep 300 & echo $! > {pid_file}; echo waiting; wait"])
    beats: list[float] = []
    with pytest.raises(setup.SetupError) as info:
        setup.run(cfg, todo, worktree, claim_dir, {}, lambda: beats.append(time.time()))
    assert info.value.facts["timed_out"] is True
    assert "waiting" in info.value.output
    assert gone(int(pid_file.read_text())), "the command's child outlived its setup"
    assert "timed out" in (claim_dir / setup.LOG).read_text()


def test_setup_and_ports_on_a_remote(tmp_path: Path, seed_repo: Path) -> None:
    """remote = "origin": a failed setup takes the claim ref back; ports are this machine's,
    and the published record carries the port."""
    from tests.test_coord import make_clone, server_refs

    bare = tmp_path / "srv.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed_repo), str(bare))
    clone = make_clone(tmp_path, f"file://{bare}", "m")
    py = clone / "pyproject.toml"
    py.write_text(py.read_text().replace('stale_after = "30m"', 'stale_after = "4s"'))
    configure(clone, commands=["sleep 2.5; echo no; exit 4"], ports=1, port_range="25000-25001")
    rc, doc = claim(clone)
    assert (rc, doc["error"], doc["exit_code"]) == (1, "setup-failed", 4)
    assert "refs/lanes/w1/claims/a" not in server_refs(bare)
    assert not config.load(clone).claim_dir("w1", "a").exists()

    configure(clone, commands=["true"], ports=1, port_range="25000-25001")
    rc, doc = claim(clone)
    assert rc == 0, doc
    assert doc["port"] == 25000
    shown = git(bare, "show", "refs/lanes/w1/claims/a:claim.json")
    assert json.loads(shown)["port"] == 25000
    assert lanes_json(clone, "heartbeat", "w1", "a")[0] == 0
    assert run_lanes(clone, "release", "w1", "a").returncode == 0
    assert ports.live(config.load(clone)) == []


def test_ctrl_c_during_setup_stops_the_command_and_undoes_the_claim(
    seed_repo: Path, tmp_path: Path
) -> None:
    cfg = config.load(seed_repo)
    started, pid_file = tmp_path / "started", tmp_path / "pid"
    configure(seed_repo, commands=[f"sleep 120 & echo $! > {pid_file}; touch {started}; wait"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "lanes", "claim", "w1", "a", "--agent", "x", "--json"],
        cwd=seed_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(400):
        if started.exists():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert gone(int(pid_file.read_text()))  # killed with the command's group
    assert not cfg.claim_dir("w1", "a").exists()
    assert not cfg.worktree_path("w1", "a").exists()
    assert git(seed_repo, "branch", "--list", "lanes/w1/a") == ""
    events = claims.ledger(cfg, "w1").events()
    assert [(e.event, e.details["reason"]) for e in events] == [
        ("claim-refused", "KeyboardInterrupt")
    ]
