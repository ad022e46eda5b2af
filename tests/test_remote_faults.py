"""Faults of the remote version (issue 9, "Faults"), through the CLI, against real servers.

The network faults use a git daemon inside a network namespace the test makes
(tests/servers.py, `netns_server`): the machine cut off reaches it over the veth pair,
another machine (a clone over file:// of the same bare repository, on the server's disk)
is never cut. A command is cut at exactly its remote step by a failpoint that waits
(LANES_FAILPOINT=<step>:wait:<file>); kills use the same failpoints without `:wait`.
Every lanes command runs with LANES_REMOTE_TIMEOUT=3 and a subprocess bound, every git
call of the tests through run_git: a cut never hangs a test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from lanes import config
from tests.conftest import LANES, commit_file, go_stale
from tests.servers import (  # noqa: F401 (fixtures)
    NetnsServer,
    Remote,
    git_daemon,
    netns_server,
    run_git,
)

INBOX = "tools/offline/_inbox"
BOUND = 60  # seconds any one lanes command may take here


def clone(tmp_path: Path, url: str, name: str, stale_after: str = "30m") -> Path:
    """A machine: a clone of `url` coordinating through it (remote = "origin")."""
    dest = tmp_path / name
    run_git(None, "clone", "-q", url, str(dest), timeout=20, check=True)
    root = tmp_path / f"wt-{name}"
    root.mkdir()
    py = dest / "pyproject.toml"
    text = re.sub(r'worktree_root = ".*"', f'worktree_root = "{root}"', py.read_text())
    remote = "" if 'remote = "origin"' in text else '\nremote = "origin"'  # seed's own?
    py.write_text(text.replace('stale_after = "30m"', f'stale_after = "{stale_after}"{remote}'))
    return dest


def lanes(
    cwd: Path, *args: str, failpoint: str = "", wait: bool = True
) -> subprocess.Popen[str] | tuple[int, dict]:  # type: ignore[type-arg]
    env = {**os.environ, "LANES_REMOTE_TIMEOUT": "3"}
    if failpoint:
        env["LANES_FAILPOINT"] = failpoint
    proc = subprocess.Popen(
        [*LANES, *args, "--json"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not wait:
        return proc
    return finish(proc)


def finish(proc: subprocess.Popen[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    try:
        out, _ = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"{proc.args} hung") from None
    return proc.returncode, json.loads(out) if out.strip() else {}


def run(cwd: Path, *args: str, failpoint: str = "") -> tuple[int, dict]:  # type: ignore[type-arg]
    result = lanes(cwd, *args, failpoint=failpoint)
    assert isinstance(result, tuple)
    return result


def cut_at(server: NetnsServer, gate: Path, cwd: Path, step: str, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    """Run a lanes command, cut the network when it reaches `step`, and let it go on."""
    proc = lanes(cwd, *args, failpoint=f"{step}:wait:{gate}", wait=False)
    assert isinstance(proc, subprocess.Popen)
    reached = gate.with_name(gate.name + ".reached")
    deadline = time.monotonic() + BOUND
    while not reached.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{step} never reached"
        time.sleep(0.02)
    server.cut("drop")
    gate.touch()
    result = finish(proc)
    gate.unlink()
    reached.unlink()
    return result


def ledger_events(machine: Path, wave: str) -> list[dict]:  # type: ignore[type-arg]
    proc = subprocess.run(
        [*LANES, "ledger", wave, "--json"],
        cwd=machine,
        capture_output=True,
        text=True,
        timeout=BOUND,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def verified(machine: Path, wave: str) -> dict:  # type: ignore[type-arg]
    code, doc = run(machine, "ledger", "verify", wave)
    assert code == 0 and doc["ok"], doc
    return doc


def remote_failed(code: int, doc: dict) -> None:  # type: ignore[type-arg]
    assert code == 1 and doc["error"] == "remote-failed", doc
    assert "origin" in doc["message"], doc


@pytest.fixture
def remote_seed(seed_repo: Path) -> Path:
    return seed_repo


@pytest.fixture
def netns_remote(netns_server: NetnsServer, seed_repo: Path) -> Remote:  # noqa: F811
    return netns_server.add(seed_repo)


def test_cut_at_each_remote_step_changes_nothing_here_and_heal_finishes(
    tmp_path: Path,
    netns_server: NetnsServer,  # noqa: F811
    netns_remote: Remote,
) -> None:
    a = clone(tmp_path, netns_remote.url, "a")  # over the network: the one cut
    b = clone(tmp_path, netns_remote.path.as_uri(), "b")  # never cut
    gate = tmp_path / "gate"
    assert run(b, "claim", "w", "l0", "--agent", "b0")[0] == 0  # the wave exists

    # A claim cut off at its push: exit 1 naming the remote, nothing here, nothing there.
    remote_failed(
        *cut_at(netns_server, gate, a, "remote-claim-push", "claim", "w", "l1", "--agent", "a1")
    )
    assert not (a / INBOX / "w" / "l1").exists()
    assert not (tmp_path / "wt-a").exists() or not any((tmp_path / "wt-a").iterdir())
    assert run_git(a, "rev-parse", "--verify", "-q", "lanes/w/l1").returncode != 0
    assert "refs/lanes/w/claims/l1" not in netns_remote.refs("refs/lanes/")
    netns_server.heal()
    code, doc = run(a, "claim", "w", "l1", "--agent", "a1")
    assert code == 0, doc
    worktree = Path(doc["worktree"])

    # A submit cut off at its push: the branch and the claim on the remote as they were.
    commit_file(worktree, "src/cut.py", "x = 1\n")
    claim_before = netns_remote.refs("refs/lanes/w/claims/")["refs/lanes/w/claims/l1"]
    remote_failed(*cut_at(netns_server, gate, a, "remote-submit-push", "submit", "w", "l1"))
    assert netns_remote.refs("refs/lanes/w/claims/")["refs/lanes/w/claims/l1"] == claim_before
    assert "refs/heads/lanes/w/l1" not in netns_remote.refs("refs/heads/")
    assert [e["event"] for e in ledger_events(b, "w")].count("submit") == 0
    netns_server.heal()
    code, doc = run(a, "submit", "w", "l1")
    assert code == 0, doc
    assert "refs/heads/lanes/w/l1" in netns_remote.refs("refs/heads/")

    # A ledger append cut off (a refused claim's row): the ledger as it was, nothing here.
    tip = netns_remote.refs("refs/lanes/w/ledger")["refs/lanes/w/ledger"]
    remote_failed(
        *cut_at(netns_server, gate, a, "remote-append-push", "claim", "w", "l0", "--agent", "a2")
    )
    assert netns_remote.refs("refs/lanes/w/ledger")["refs/lanes/w/ledger"] == tip
    assert not (a / INBOX / "w" / "l0").exists()
    netns_server.heal()
    code, doc = run(a, "claim", "w", "l0", "--agent", "a2")
    assert code == 3 and doc["holder"] == "b0", doc

    events = [(e["event"], e["lane"], e["agent"]) for e in ledger_events(b, "w")]
    assert events == [
        ("claim", "l0", "b0"),
        ("claim", "l1", "a1"),
        ("submit", "l1", "a1"),
        ("claim-refused", "l0", "a2"),
    ]
    assert verified(a, "w")["events"] == 4
    verified(b, "w")

    # An integrate cut off at its landing push: main, the ledger and the claims on the
    # remote as they were; healed, the next pass (its lease taken over: the cut one's
    # process is gone) lands the lane once.
    main_before = netns_remote.refs("refs/heads/main")
    claim_before = netns_remote.refs("refs/lanes/w/claims/")["refs/lanes/w/claims/l1"]
    remote_failed(*cut_at(netns_server, gate, a, "remote-land-push", "integrate", "w"))
    assert netns_remote.refs("refs/heads/main") == main_before
    assert netns_remote.refs("refs/lanes/w/claims/")["refs/lanes/w/claims/l1"] == claim_before
    netns_server.heal()
    assert "integrated" not in [e["event"] for e in ledger_events(b, "w")]
    code, doc = run(a, "integrate", "w")
    assert code == 0 and doc["integrated"] == ["l1"], doc
    assert netns_remote.refs("refs/heads/main")["refs/heads/main"] == doc["head"]
    assert [e["event"] for e in ledger_events(b, "w")].count("integrated") == 1
    verified(b, "w")


def test_a_server_restarted_mid_wave_loses_nothing(
    tmp_path: Path,
    netns_server: NetnsServer,  # noqa: F811
    netns_remote: Remote,
) -> None:
    machines = [clone(tmp_path, netns_remote.url, name) for name in ("a", "b")]
    procs = {
        (m, f"{m.name}{i}", f"l{i % 4}"): lanes(
            m, "claim", "w", f"l{i % 4}", "--agent", f"{m.name}{i}", wait=False
        )
        for m in machines
        for i in range(4)
    }
    time.sleep(0.3)
    netns_server.restart_server()
    results = {key: finish(p) for key, p in procs.items()}  # type: ignore[arg-type]
    for (m, agent, lane), (code, doc) in list(results.items()):
        if code == 1:  # cut by the restart: the same command again
            assert doc["error"] == "remote-failed", doc
            results[(m, agent, lane)] = run(m, "claim", "w", lane, "--agent", agent)
    claims = netns_remote.refs("refs/lanes/w/claims/")
    assert sorted(claims) == [f"refs/lanes/w/claims/l{i}" for i in range(4)]
    won = {lane: agent for (_, agent, lane), (code, _) in results.items() if code == 0}
    for (_, _agent, lane), (code, doc) in results.items():
        assert code in (0, 3), doc
        if code == 3:  # told who holds it, and that one is recorded as the holder
            assert doc["holder"] == won.get(lane, doc["holder"]), doc
    recorded = {
        (e["lane"], e["agent"]) for e in ledger_events(machines[0], "w") if e["event"] == "claim"
    }
    assert set(won.items()) <= recorded  # every claim that said yes is in the ledger
    for m in machines:
        verified(m, "w")


def test_killed_between_the_remote_and_the_local_step_the_next_command_finishes(
    tmp_path: Path,
    git_daemon,  # noqa: F811
    seed_repo: Path,
) -> None:
    remote = git_daemon.add(seed_repo)
    a = clone(tmp_path, remote.url, "a")

    # Killed once the claim ref is pushed, before its claim directory and worktree.
    code, _ = run(a, "claim", "w", "l1", "--agent", "a1", failpoint="remote-claim-pushed")
    assert code == -9 and "refs/lanes/w/claims/l1" in remote.refs("refs/lanes/")
    assert not (a / INBOX / "w" / "l1").exists()
    code, doc = run(a, "claim", "w", "l1", "--agent", "a1")  # adopts it and finishes
    assert code == 0, doc
    worktree = Path(doc["worktree"])
    assert worktree.is_dir() and (a / INBOX / "w" / "l1" / "claim.json").is_file()

    # Killed once the submit is pushed, before its ledger row: the next submit finishes.
    commit_file(worktree, "src/k.py", "k = 1\n")
    code, _ = run(a, "submit", "w", "l1", failpoint="remote-submit-pushed")
    assert code == -9 and "refs/heads/lanes/w/l1" in remote.refs("refs/heads/")
    code, doc = run(a, "submit", "w", "l1")
    assert code == 0, doc
    assert [e["event"] for e in ledger_events(a, "w")].count("submit") == 1

    # Killed once a release deleted the claim ref, before its claim dir was archived: the
    # delete and the `release` row were one push, so the remote never shows the lane free
    # without its row; the next command on it archives the claim dir where the row says.
    code, doc = run(a, "claim", "w", "l2", "--agent", "a2")
    assert code == 0, doc
    (Path(doc["worktree"]) / "unsaved.txt").write_text("keep me\n")
    code, _ = run(a, "release", "w", "l2", failpoint="remote-released-pushed")
    assert code == -9 and "refs/lanes/w/claims/l2" not in remote.refs("refs/lanes/")
    row = [e for e in ledger_events(a, "w") if e["lane"] == "l2"][-1]
    assert row["event"] == "release", row
    code, doc = run(a, "heartbeat", "w", "l2")
    assert code == 4 and doc["error"] == "not-held", doc
    assert not (a / INBOX / "w" / "l2").exists()
    patch = Path(row["details"]["saved_patch"])
    assert patch.parent == Path(row["details"]["archived_to"]) and patch.parent.parent.name == (
        ".archive"
    )
    assert "keep me" in patch.read_text()
    code, doc = run(a, "status", "w")
    assert {r["lane"]: r["state"] for r in doc["lanes"]}["l2"] == "released"
    verified(a, "w")

    # A reap killed the same way (gc on this machine, the lane stale): its row is there too.
    code, doc = run(a, "claim", "w", "l3", "--agent", "a3")
    assert code == 0, doc
    (Path(doc["worktree"]) / "unsaved.txt").write_text("keep me too\n")
    go_stale(config.load(a), "w", "l3", bare=remote.path)
    code, _ = run(a, "gc", failpoint="remote-reaped-pushed")
    assert code == -9 and "refs/lanes/w/claims/l3" not in remote.refs("refs/lanes/")
    row = [e for e in ledger_events(a, "w") if e["lane"] == "l3"][-1]
    assert row["event"] == "reap", row
    assert run(a, "release", "w", "l3")[1]["error"] == "not-held"  # the next command
    assert "keep me too" in Path(row["details"]["saved_patch"]).read_text()
    verified(a, "w")


def test_a_machine_cut_off_mid_wave_loses_nothing_and_is_reaped_only_when_stale(
    tmp_path: Path,
    netns_server: NetnsServer,  # noqa: F811
    netns_remote: Remote,
) -> None:
    stale = 8  # the cut heartbeat below takes LANES_REMOTE_TIMEOUT (3s) to fail
    a = clone(tmp_path, netns_remote.url, "a", stale_after=f"{stale}s")
    b = clone(tmp_path, netns_remote.path.as_uri(), "b", stale_after=f"{stale}s")
    code, one = run(a, "claim", "w", "l1", "--agent", "a1")
    assert code == 0, one
    code, two = run(a, "claim", "w", "l2", "--agent", "a2")
    assert code == 0, two
    commit_file(Path(one["worktree"]), "src/one.py", "one = 1\n")
    assert run(a, "submit", "w", "l1")[0] == 0  # pushed: the remote has it
    work = Path(two["worktree"])
    commit_file(work, "src/two.py", "two = 2\n")  # committed here, never pushed
    (work / "scratch.txt").write_text("not even committed\n")
    assert run(a, "heartbeat", "w", "l2")[0] == 0
    beat = time.time()

    netns_server.cut("drop")
    remote_failed(*run(a, "heartbeat", "w", "l2"))
    code, doc = run(b, "gc")  # not stale yet: nothing reaped
    assert code == 0 and doc["actions"] == [], doc
    code, doc = run(b, "status", "w")
    rows = {r["lane"]: r for r in doc["lanes"]}
    assert rows["l2"]["state"] == "claimed" and rows["l2"]["claimed_at"] == two_time(a)
    assert rows["l2"]["heartbeat_age_seconds"] is not None and rows["l2"]["held_on"]
    time.sleep(max(0.0, beat + stale + 1.5 - time.time()))
    code, doc = run(b, "gc")
    assert code == 0, doc
    assert [(x["lane"], x["action"]) for x in doc["actions"]] == [("l2", "reap")]
    refs = netns_remote.refs()
    assert "refs/lanes/w/claims/l2" not in refs  # reaped: only the ref
    assert "refs/lanes/w/claims/l1" in refs and "refs/heads/lanes/w/l1" in refs  # submitted
    assert (work / "scratch.txt").read_text() == "not even committed\n"  # untouched

    netns_server.heal()
    code, doc = run(a, "heartbeat", "w", "l2")  # back: told it lost l2, its work kept
    assert code == 4 and doc["error"] == "not-held", doc
    assert (work / "scratch.txt").is_file()
    code, doc = run(a, "claim", "w", "l2", "--agent", "a2")  # and goes on
    assert code == 0, doc
    assert (work / "scratch.txt").is_file() and (work / "src/two.py").is_file()
    events = [(e["event"], e["lane"]) for e in ledger_events(b, "w")]
    assert events.count(("reap", "l2")) == 1 and events[-1] == ("claim", "l2")
    verified(a, "w")
    verified(b, "w")


def two_time(machine: Path) -> str:
    record = json.loads((machine / INBOX / "w" / "l2" / "claim.json").read_text())
    return str(record["time"])
