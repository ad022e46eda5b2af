"""Claude Code's worktree hooks backed by lanes, and `lanes init --claude-code`.

The hook documents are the ones Claude Code sends (docs/claude-code.md names where each
was found). The hook runs as Claude Code runs it: a real process, the document written to
its standard input, and that input left open.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lanes import config, hooks
from lanes.errors import BadInput
from tests.conftest import LANES, commit_file, git, lanes_json, run_lanes, snapshot

SESSION = "412cbaa3-5f0e-4f4e-9d0a-6c1b2f3e4d5a"
AGENT = "claude-" + SESSION


def captured(repo: Path, name: str = "feature-auth") -> dict[str, Any]:
    """The WorktreeCreate document as captured from Claude Code 2.1.207
    (anthropics/claude-code#77566), and as the hooks reference shows it today."""
    return {
        "session_id": SESSION,
        "transcript_path": f"/home/u/.claude/projects/-repo/{SESSION}.jsonl",
        "cwd": str(repo),
        "hook_event_name": "WorktreeCreate",
        "name": name,
    }


def hook(
    cwd: Path, sub: str, doc: Any, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, str, str, float]:
    """Run `lanes hook SUB` with `doc` on its stdin, which stays open until it exits:
    (exit code, stdout, stderr, seconds it took)."""
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode() + b"\n"
    proc = subprocess.Popen(
        [*LANES, "hook", sub],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "LANES_WAVE": "w45", **(env or {})},
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    start = time.monotonic()
    proc.stdin.write(data)
    proc.stdin.flush()  # and never closed while it runs, as Claude Code may keep it
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"lanes hook {sub} did not answer with its stdin open") from None
    took = time.monotonic() - start
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdin.close()
    proc.stdout.close()
    proc.stderr.close()
    return code, out, err, took


def lane_row(repo: Path, wave: str, lane: str) -> dict[str, Any]:
    rc, doc = lanes_json(repo, "status", wave)
    assert rc == 0
    rows = [r for r in doc["lanes"] if r["lane"] == lane]
    assert len(rows) == 1, doc
    row: dict[str, Any] = rows[0]
    return row


def ledger(repo: Path, wave: str) -> list[dict[str, Any]]:
    proc = run_lanes(repo, "ledger", wave, "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


# -- WorktreeCreate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    ["captured", "reference-with-permission-mode", "worktree_name", "worktree_path-only"],
)
def test_create_claims_a_lane_and_prints_its_path_alone_with_stdin_open(
    seed_repo: Path, worktree_root: Path, variant: str
) -> None:
    doc = captured(seed_repo)
    if variant == "reference-with-permission-mode":  # the reference's common fields
        doc["permission_mode"] = "default"
    elif variant == "worktree_name":  # how the reference once named the field
        doc["worktree_name"] = doc.pop("name")
    elif variant == "worktree_path-only":  # an older reference: a path, no name
        del doc["name"]
        doc["worktree_path"] = str(seed_repo / ".claude" / "worktrees" / "feature-auth")
    code, out, err, _ = hook(seed_repo / "scripts", "worktree-create", doc)  # any cwd
    path = worktree_root / "jpcite-w45-feature-auth"
    assert code == 0, err
    assert out == f"{path}\n"  # nothing else: Claude Code reads it as the path
    assert path.is_dir() and (path / ".git").is_file()
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == "lanes/w45/feature-auth"
    assert git(path, "rev-parse", "HEAD") == git(seed_repo, "rev-parse", "main")
    row = lane_row(seed_repo, "w45", "feature-auth")
    assert (row["agent"], row["state"], row["worktree"]) == (AGENT, "claimed", str(path))
    claims = [e for e in ledger(seed_repo, "w45") if e["event"] == "claim"]
    assert [(e["lane"], e["agent"]) for e in claims] == [("feature-auth", AGENT)]


def test_a_name_lanes_cannot_use_is_made_a_lane_name_and_none_gets_one(
    seed_repo: Path, worktree_root: Path
) -> None:
    code, out, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo, "Feature/Auth V2"))
    assert code == 0, err
    assert out == f"{worktree_root / 'jpcite-w45-feature-auth-v2'}\n"
    assert "'Feature/Auth V2' is lane feature-auth-v2" in err
    doc = captured(seed_repo)
    del doc["name"]
    code, out, err, _ = hook(seed_repo, "worktree-create", doc)
    assert code == 0, err
    lane = Path(out.strip()).name.removeprefix("jpcite-w45-")
    assert lane.startswith("claude-") and lane_row(seed_repo, "w45", lane)["agent"] == AGENT


def test_without_lanes_wave_the_lane_goes_into_the_wave_of_the_day(seed_repo: Path) -> None:
    days = {"d" + datetime.now(UTC).strftime("%Y%m%d")}
    code, out, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo), {"LANES_WAVE": ""})
    days.add("d" + datetime.now(UTC).strftime("%Y%m%d"))  # the test may straddle midnight
    assert code == 0, err
    wave = Path(out.strip()).name.removeprefix("jpcite-").removesuffix("-feature-auth")
    assert wave in days
    assert lane_row(seed_repo, wave, "feature-auth")["agent"] == AGENT


def test_the_same_session_asking_again_gets_its_worktree_and_another_gets_exit_3(
    seed_repo: Path,
) -> None:
    code, first, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo))
    assert code == 0, err
    (Path(first.strip()) / "work.txt").write_text("in progress\n")
    code, again, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo))
    assert (code, again) == (0, first), err
    assert (Path(first.strip()) / "work.txt").read_text() == "in progress\n"  # as it was
    other = {**captured(seed_repo), "session_id": "another-session"}
    code, out, err, _ = hook(seed_repo, "worktree-create", other)
    assert (code, out) == (3, "")  # non-zero: Claude Code fails the creation
    assert f"held by {AGENT}" in err
    assert len([e for e in ledger(seed_repo, "w45") if e["event"] == "claim"]) == 1


def test_the_lane_is_set_up_and_setup_output_stays_off_stdout(seed_repo: Path) -> None:
    (seed_repo / ".env").write_text("SECRET=1\n")
    (seed_repo / ".git" / "info" / "exclude").write_text(".env\n")
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + '\n[tool.lanes.setup]\ncopy = [".env"]\n'
        + 'commands = ["echo setup says hello", "echo setup complains >&2"]\n'
    )
    git(seed_repo, "commit", "-qam", "setup")
    code, out, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo))
    assert code == 0, err
    path = Path(out.strip())
    assert out == f"{path}\n" and "setup says" not in out
    assert (path / ".env").read_text() == "SECRET=1\n"  # what every claim gets


def test_what_runs_during_the_hook_writes_to_stderr_never_to_stdout() -> None:
    """A claim runs other programs (setup commands, once a repository has them) that
    inherit file descriptor 1: while the hook works it is standard error, or Claude Code
    would read their output as the path."""
    code = (
        "import subprocess, sys\n"
        "from lanes.cli.hook_cmds import _stdout_to_stderr\n"
        "with _stdout_to_stderr():\n"
        "    subprocess.run(['echo', 'noise from a child'])\n"
        "    print('noise from lanes')\n"
        "print('/the/path')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "/the/path\n"
    assert "noise from a child" in proc.stderr and "noise from lanes" in proc.stderr


@pytest.mark.parametrize(
    ("doc", "env", "says"),
    [
        (b'{"session_id": "s", "cwd": ', {}, "not valid JSON"),  # cut short, then EOF
        (b"[1, 2]\n", {}, "not a JSON object"),
        (b"", {}, "empty"),
        ({"cwd": "REPO", "hook_event_name": "WorktreeCreate", "name": "a"}, {}, "'session_id'"),
        ({"session_id": SESSION, "name": "a"}, {}, "'cwd'"),
        ({"session_id": SESSION, "cwd": "relative/dir", "name": "a"}, {}, "absolute path"),
        ({"session_id": SESSION, "cwd": "REPO", "name": 7}, {}, "not a string"),
        ({**captured(Path("REPO")), "hook_event_name": "WorktreeRemove"}, {}, "WorktreeRemove"),
        (captured(Path("REPO")), {"LANES_WAVE": "Bad Wave"}, "invalid wave name"),
    ],
)
def test_bad_input_exits_2_and_creates_nothing(
    seed_repo: Path, worktree_root: Path, doc: Any, env: dict[str, str], says: str
) -> None:
    if isinstance(doc, dict):
        doc = {k: (str(seed_repo) if v == "REPO" else v) for k, v in doc.items()}
    before = snapshot(seed_repo, worktree_root)
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    proc = subprocess.run(  # stdin closed at the end of the document here
        [*LANES, "hook", "worktree-create"],
        cwd=seed_repo,
        input=data,
        capture_output=True,
        env={**os.environ, "LANES_WAVE": "w45", **env},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    assert says in proc.stderr.decode()
    assert snapshot(seed_repo, worktree_root) == before
    assert git(seed_repo, "worktree", "list").count("\n") == 0


# -- reading the document (the core) ----------------------------------------------------------


def test_read_document_answers_as_soon_as_the_object_is_complete() -> None:
    """Split anywhere, braces and quotes inside strings, the writer's end left open."""
    doc = {"name": 'a } { " \\ ]', "nested": {"list": [1, {"x": "é}"}]}, "cwd": "/r"}
    data = json.dumps(doc, ensure_ascii=False).encode()
    read_fd, write_fd = os.pipe()
    try:

        def dribble() -> None:
            for i in range(len(data)):
                os.write(write_fd, data[i : i + 1])
                time.sleep(0.001)

        writer = threading.Thread(target=dribble)
        writer.start()
        assert hooks.read_document(read_fd, timeout=10) == doc
        writer.join()
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_read_document_gives_up_on_an_incomplete_object_at_its_deadline() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b'{"session_id": "s", "cwd": "/r"')  # no closing brace, pipe open
        start = time.monotonic()
        with pytest.raises(BadInput) as err:
            hooks.read_document(read_fd, timeout=0.3)
        assert err.value.code == "bad-hook-input" and "within 0.3s" in err.value.message
        assert time.monotonic() - start < 5
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_read_document_refuses_what_cannot_be_an_object_without_waiting() -> None:
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"  hello")
        with pytest.raises(BadInput, match="not a JSON object"):
            hooks.read_document(read_fd, timeout=30)  # refused at once, not at 30 s
        os.write(write_fd, b"{" + b" " * 64)
        with pytest.raises(BadInput, match="larger than 32 bytes"):
            hooks.read_document(read_fd, timeout=30, limit=32)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_lane_names_from_worktree_names() -> None:
    assert hooks.lane_name("bold-oak-a3f2") == "bold-oak-a3f2"
    assert hooks.lane_name("Feature/Auth") == "feature-auth"
    assert hooks.lane_name("..x..y..") == "x.y"
    assert hooks.lane_name("deps.lock") == "deps-lock"
    assert hooks.lane_name("a" * 60) == "a" * 40
    assert hooks.lane_name("日本語") is None and hooks.lane_name("") is None
    assert hooks.agent_id(SESSION) == AGENT
    assert len(hooks.agent_id("x" * 200)) == 64
    assert hooks.wave_of(None, datetime(2026, 12, 1, tzinfo=UTC)) == "d20261201"


# -- WorktreeRemove ---------------------------------------------------------------------------


def test_remove_releases_the_lane_and_keeps_its_uncommitted_work(
    seed_repo: Path, cfg: config.Config
) -> None:
    code, out, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo))
    assert code == 0, err
    path = Path(out.strip())
    (path / "notes.txt").write_text("half a thought\n")  # untracked
    (path / "README.md").write_text("edited, never committed\n")  # tracked, changed
    doc = {
        "session_id": SESSION,
        "transcript_path": f"/home/u/.claude/projects/-repo/{SESSION}.jsonl",
        "cwd": str(path),  # the session ran in the worktree
        "hook_event_name": "WorktreeRemove",
        "worktree_path": str(path),
    }
    code, out, err, _ = hook(path, "worktree-remove", doc)  # run from inside it, too
    assert code == 0, err
    assert out == ""  # Claude Code expects nothing on stdout
    assert not path.exists()
    assert lane_row(seed_repo, "w45", "feature-auth")["state"] == "released"
    release = [e for e in ledger(seed_repo, "w45") if e["event"] == "release"]
    assert len(release) == 1 and release[0]["agent"] == AGENT
    patch = Path(release[0]["details"]["saved_patch"])
    assert patch.parent.parent == cfg.wave_dir("w45") / ".archive"
    text = patch.read_text()
    assert "half a thought" in text and "edited, never committed" in text
    # released, its branch kept: Claude Code asking for the name again resumes it
    code, again, err, _ = hook(seed_repo, "worktree-create", captured(seed_repo))
    assert (code, again) == (0, f"{path}\n"), err


def test_remove_leaves_what_is_not_a_claude_lane_alone(
    seed_repo: Path, worktree_root: Path
) -> None:
    plain_dir = worktree_root / "somebody-elses"
    plain_dir.mkdir()
    (plain_dir / "keep.txt").write_text("mine\n")
    code, out, err, _ = hook(
        seed_repo, "worktree-remove", {"cwd": str(seed_repo), "worktree_path": str(plain_dir)}
    )
    assert (code, out) == (0, "") and "no lane" in err
    assert (plain_dir / "keep.txt").read_text() == "mine\n"
    rc, doc = lanes_json(seed_repo, "claim", "w45", "by-hand", "--agent", "bob")
    assert rc == 0
    code, out, err, _ = hook(
        seed_repo, "worktree-remove", {"cwd": str(seed_repo), "worktree_path": doc["worktree"]}
    )
    assert (code, out) == (0, "") and "held by bob" in err
    assert Path(doc["worktree"]).is_dir()
    assert lane_row(seed_repo, "w45", "by-hand")["state"] == "claimed"
    # integrated (whoever held it): the answer is gc, not a release that would be refused
    commit_file(Path(doc["worktree"]), "src/by_hand.py", "x = 1\n")
    assert lanes_json(Path(doc["worktree"]), "submit")[0] == 0
    assert lanes_json(seed_repo, "integrate", "w45")[0] == 0
    code, out, err, _ = hook(
        seed_repo, "worktree-remove", {"cwd": str(seed_repo), "worktree_path": doc["worktree"]}
    )
    assert (code, out) == (0, "") and "integrated: lanes gc removes its worktree" in err, err


def test_remove_without_a_path_exits_2(seed_repo: Path) -> None:
    code, out, err, _ = hook(seed_repo, "worktree-remove", {"session_id": SESSION})
    assert (code, out) == (2, "") and "worktree_path" in err


# -- lanes init --claude-code -----------------------------------------------------------------


def settings_of(repo: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((repo / ".claude" / "settings.json").read_text())
    return doc


def commands(settings: dict[str, Any], event: str) -> list[str]:
    return [h["command"] for g in settings["hooks"].get(event, []) for h in g["hooks"]]


def test_init_claude_code_merges_once_and_keeps_everything_else(seed_repo: Path) -> None:
    settings = seed_repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    mine: dict[str, Any] = {
        "model": "opus",
        "permissions": {"allow": ["Bash(make test)"]},
        "hooks": {
            "PostToolUse": [
                {"matcher": "Write|Edit", "hooks": [{"type": "command", "command": "make fmt"}]}
            ]
        },
    }
    settings.write_text(json.dumps(mine, indent=4) + "\n")
    for run in range(2):
        rc, doc = lanes_json(seed_repo, "init", "--claude-code")
        assert rc == 0, doc
        assert doc["config_kept"] is True  # configured in pyproject.toml: hooks only
        assert doc["claude_settings"]["changed"] is (run == 0)
        now = settings_of(seed_repo)
        assert commands(now, "WorktreeCreate") == ["lanes hook worktree-create"]
        assert commands(now, "WorktreeRemove") == ["lanes hook worktree-remove"]
        assert {k: now[k] for k in ("model", "permissions")} == {
            k: mine[k] for k in ("model", "permissions")
        }
        assert now["hooks"]["PostToolUse"] == mine["hooks"]["PostToolUse"]
    assert '\n    "model"' in settings.read_text()  # its own indentation kept
    assert not (seed_repo / "lanes.toml").exists()
    assert not list(settings.parent.glob("*.tmp"))


def test_the_hooks_init_writes_run_as_claude_code_runs_them(
    seed_repo: Path, worktree_root: Path
) -> None:
    assert lanes_json(seed_repo, "init", "--claude-code")[0] == 0
    [create] = commands(settings_of(seed_repo), "WorktreeCreate")
    [remove] = commands(settings_of(seed_repo), "WorktreeRemove")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LANES_WAVE": "w45",
        "CLAUDE_PROJECT_DIR": str(seed_repo),
    }
    shell = ["sh", "-c"]
    made = subprocess.run(
        [*shell, create],
        cwd=seed_repo,
        input=json.dumps(captured(seed_repo)),
        capture_output=True,
        text=True,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout == f"{worktree_root / 'jpcite-w45-feature-auth'}\n"
    gone = subprocess.run(
        [*shell, remove],
        cwd=seed_repo,
        input=json.dumps(
            {"hook_event_name": "WorktreeRemove", "worktree_path": made.stdout.strip()}
        ),
        capture_output=True,
        text=True,
        env=env,
    )
    assert (gone.returncode, gone.stdout) == (0, ""), gone.stderr
    assert not Path(made.stdout.strip()).exists()
    assert shlex.split(create)[-2:] == ["hook", "worktree-create"]


def test_an_invalid_settings_json_is_refused_and_nothing_changes(seed_repo: Path) -> None:
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().split("[tool.lanes]")[0])  # unconfigured
    settings = seed_repo / ".claude" / "settings.json"
    settings.parent.mkdir()
    for broken in ('{"hooks": {"WorktreeCreate": [}', "[]", '{"hooks": []}'):
        settings.write_text(broken)
        before = snapshot(seed_repo)
        proc = run_lanes(seed_repo, "init", "--claude-code")
        assert proc.returncode == 2, proc.stderr
        assert "bad-claude-settings" in proc.stderr
        assert settings.read_text() == broken
        assert snapshot(seed_repo) == before  # no lanes.toml, no .gitignore line either


def test_init_claude_code_on_a_new_repository_writes_both_and_dry_run_writes_nothing(
    seed_repo: Path,
) -> None:
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().split("[tool.lanes]")[0])
    before = snapshot(seed_repo)
    proc = run_lanes(seed_repo, "init", "--claude-code", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert '"WorktreeCreate"' in proc.stdout and "lanes hook worktree-remove" in proc.stdout
    assert "project = " in proc.stdout  # the lanes.toml, too
    assert snapshot(seed_repo) == before
    rc, doc = lanes_json(seed_repo, "init", "--claude-code")
    assert rc == 0 and doc["config_kept"] is False
    assert config.load(seed_repo).source == "lanes.toml"
    assert doc["claude_settings"]["added"] == ["WorktreeCreate", "WorktreeRemove"]
    assert commands(settings_of(seed_repo), "WorktreeCreate") == ["lanes hook worktree-create"]
