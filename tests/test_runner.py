"""The wave runner (`lanes run`): real agents (small shell scripts), real process groups.

Each agent here behaves like one: it commits and drops a fragment, edits a contended file,
crashes, hangs past its timeout, ignores TERM, forks grandchildren that keep writing,
prints megabytes. The runner's promises are checked from the outside: what the ledger,
the branches, the worktrees and /proc say afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lanes import config, containment, keeper, runner, wave_plan
from lanes.errors import BadInput
from tests.conftest import LANES, commit_file, git, lanes_json, run_lanes

PY = sys.executable
WAVE = "w1"


# -- helpers ------------------------------------------------------------------------------


def agent(tmp_path: Path, name: str, body: str) -> str:
    """A shell script that behaves like an agent; its path."""
    path = tmp_path / "agents" / f"{name}.sh"
    path.parent.mkdir(exist_ok=True)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    path.write_text(
        f'#!/bin/sh\nOUT="{out}"\nLANES="{PY} -m lanes"\n' + body.lstrip("\n"),
        encoding="utf-8",
    )
    path.chmod(0o755)
    return str(path)


def plan_file(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(d["schema_version"] == 1 for d in docs)
    return docs


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def wait_for(cond: Callable[[], bool], seconds: float, what: str) -> None:
    until = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > until:
            raise AssertionError(f"not within {seconds}s: {what}")
        time.sleep(0.05)


def pids(out: Path, pattern: str) -> list[int]:
    return [int(p.read_text().split()[0]) for p in sorted(out.glob(pattern)) if p.read_text()]


def ledger_rows(repo: Path, wave: str = WAVE) -> list[dict[str, Any]]:
    proc = run_lanes(repo, "ledger", wave, "--json")
    assert proc.returncode == 0, proc.stderr
    return json_lines(proc.stdout)


def ledger_ok(repo: Path, wave: str = WAVE) -> None:
    code, doc = lanes_json(repo, "ledger", "verify", wave)
    assert code == 0 and doc["ok"], doc


def states(repo: Path) -> dict[str, str]:
    code, doc = lanes_json(repo, "status", WAVE)
    assert code == 0, doc
    return {row["lane"]: row["state"] for row in doc["lanes"]}


GOOD = """
cat > "$OUT/$LANES_LANE.stdin"
env > "$OUT/$LANES_LANE.env"
m="${MIG:-399}_$LANES_LANE.sql"
echo "SELECT 1;" > "scripts/migrations/$m"
git add "scripts/migrations/$m" && git commit -q -m "lane $LANES_LANE: a migration"
$LANES fragment manifest "$m" --json > /dev/null || exit 9
echo "done with $LANES_LANE"
"""


# -- the plan -------------------------------------------------------------------------------


def _plan(tmp_path: Path, text: str) -> wave_plan.Plan:
    return wave_plan.load(plan_file(tmp_path, text))


def test_plan_defaults_apply_and_a_task_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "b.md").write_text("Do B.\n", encoding="utf-8")
    plan = _plan(
        tmp_path,
        """
[defaults]
command = ["claude", "-p"]
timeout = "45m"
env = { A = "1", B = "defaults" }

[[lane]]
name = "api-a"
task = "Do A."
owns = ["src/a/**"]

[[lane]]
name = "api-b"
task_file = "tasks/b.md"
timeout = 90
grace = "0s"
command = ["codex", "exec"]
env = { B = "lane" }
agent = "codex@box"
""",
    )
    a, b = plan.lanes
    assert (a.name, a.command, a.timeout_seconds, a.agent) == (
        "api-a",
        ("claude", "-p"),
        2700,
        "run-api-a",
    )
    assert a.env == {"A": "1", "B": "defaults"} and a.grace_seconds == 10
    assert (b.task, b.command, b.timeout_seconds, b.grace_seconds) == (
        "Do B.\n",
        ("codex", "exec"),
        90,
        0,
    )
    assert b.env == {"A": "1", "B": "lane"} and b.agent == "codex@box"


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        (
            '[[lane]]\nname = "a"\ntask = "t"\ncommand = ["x"]\ntimout = "1m"',
            "lane[0].timout",
            "known keys in [[lane]]",
        ),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask = "t"\n[[lane]]\nname = "b"\ntask = "t"\n[[lane]]\nname = "c"\ntask = "t"\ntimeout = "soon"',
            "lane[2].timeout",
            "like 90s",
        ),
        (
            '[defaults]\ncommand = "claude -p"\n[[lane]]\nname = "a"\ntask = "t"',
            "defaults.command",
            "argv list",
        ),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "A b"\ntask = "t"',
            "lane[0].name",
            "invalid lane name",
        ),
        ('[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"', "lane[0]", "exactly one of task"),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask = "t"\ntask_file = "f"',
            "lane[0]",
            "exactly one of task",
        ),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask_file = "nope.md"',
            "lane[0].task_file",
            "cannot read",
        ),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask = "t"\n[[lane]]\nname = "a"\ntask = "u"',
            "lane[1].name",
            "also lane[0]",
        ),
        ('[[lane]]\nname = "a"\ntask = "t"', "lane[0].command", "no command"),
        (
            '[defaults]\ncommand = ["x"]\nenv = { LANES_LANE = "x" }\n[[lane]]\nname = "a"\ntask = "t"',
            "defaults.env",
            "set by the runner",
        ),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask = "t"\nenv = { N = 1 }',
            "lane[0].env",
            "must be a string",
        ),
        ('[defaults]\ncommand = ["x"]\n[lane]\nname = "a"\ntask = "t"', "lane", "[[lane]]"),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask = "t"\nowns = ["../x"]',
            "lane[0].owns",
            "inside the repository",
        ),
        (
            '[defaults]\ncommand = ["x"]\n[[lane]]\nname = "a"\ntask = "t"\nowns = ["src/dim_a/**"]\n'
            '[[lane]]\nname = "b"\ntask = "t"\nowns = ["docs/**", "src/*/models.py"]',
            "lane[1].owns",
            "overlaps 'src/dim_a/**'",
        ),
        ("[[lane]\n", "", "not valid TOML"),
    ],
)
def test_bad_plans_are_refused_naming_the_key(
    tmp_path: Path, text: str, key: str, says: str
) -> None:
    with pytest.raises(BadInput) as caught:
        _plan(tmp_path, text)
    assert caught.value.code == "bad-plan" and caught.value.exit_code == 2
    assert key in caught.value.message and says in caught.value.message + caught.value.hint


def test_disjoint_owns_are_accepted(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        '[defaults]\ncommand = ["x"]\n'
        '[[lane]]\nname = "a"\ntask = "t"\nowns = ["src/dim_a/**", "docs/a.md"]\n'
        '[[lane]]\nname = "b"\ntask = "t"\nowns = ["src/dim_b/**", "docs/[b-z]*.md"]\n',
    )
    assert [pl.owns for pl in plan.lanes] == [
        ("src/dim_a/**", "docs/a.md"),
        ("src/dim_b/**", "docs/[b-z]*.md"),
    ]


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("src/dim_a/**", "src/dim_b/**", False),
        ("src/**", "src/dim_a/x.py", True),
        ("src/*.py", "src/*.md", False),
        ("src/a*", "src/*b", True),  # src/ab: no example path of either glob alone finds it
        ("src/api", "src/api/x.py", True),  # a path owns what is beneath it
        ("src/dim_a", "src/dim_ab", False),
        ("docs/[a-m]*", "docs/[n-z]*", False),
        ("docs/[a-m]*", "docs/[!a-c]*", True),
        ("src/?", "src/ab", False),
        ("src/??", "src/ab", True),
        ("a/**/z", "a/b/**", True),
        ("**/*.py", "a/b/c.py", True),
        ("tests/test_a.py", "tests/test_b.py", False),
    ],
)
def test_globs_overlap_exactly(a: str, b: str, overlap: bool) -> None:
    assert wave_plan.globs_overlap(a, b) is overlap
    assert wave_plan.globs_overlap(b, a) is overlap


def test_a_bad_plan_exits_2_through_the_cli_and_claims_nothing(
    seed_repo: Path, tmp_path: Path
) -> None:
    plan = plan_file(
        tmp_path,
        '[defaults]\ncommand = ["true"]\n[[lane]]\nname = "a"\ntask = "t"\n'
        '[[lane]]\nname = "b"\ntask = "t"\n[[lane]]\nname = "c"\ntask = "t"\ntimeout = "45 minutes"\n',
    )
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--json")
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["error"] == "bad-plan" and "lane[2].timeout" in doc["message"]
    assert not (seed_repo / "tools/offline/_inbox" / WAVE).exists()
    missing = plan_file(
        tmp_path, '[defaults]\ncommand = ["no-such-agent-xyz"]\n[[lane]]\nname = "a"\ntask = "t"\n'
    )
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(missing), "--json")
    assert proc.returncode == 2 and "lane[0].command" in json.loads(proc.stdout)["message"]
    assert not (seed_repo / "tools/offline/_inbox" / WAVE).exists()


def test_a_command_path_is_checked_before_anything_is_claimed(
    seed_repo: Path, tmp_path: Path
) -> None:
    inbox = seed_repo / "tools/offline/_inbox" / WAVE
    not_exec = tmp_path / "not-exec.sh"
    not_exec.write_text("#!/bin/sh\n", encoding="utf-8")
    commit_file(seed_repo, "tools/plain.sh", "#!/bin/sh\nexit 0\n")  # committed, mode 644

    def refused(program: str) -> str:
        plan = plan_file(
            tmp_path, f'[[lane]]\nname = "a"\ntask = "t"\ncommand = ["{program}"]\n', "p.toml"
        )
        proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["error"] == "bad-plan" and doc["keys"] == ["lane[0].command"]
        assert "run lanes run again" not in doc["message"] + doc["hint"]
        assert not inbox.exists()  # nothing claimed, nothing in the ledger
        return str(doc["message"] + " / " + doc["hint"])

    assert "does not exist" in refused(str(tmp_path / "no-such-agent.sh"))
    assert "is not executable (chmod +x" in refused(str(not_exec))
    said = refused("./agent.sh")  # relative: to the worktree, checked out from main
    assert "is not in the tree of main" in said and "absolute path" in said
    assert "mode 100644" in refused("tools/plain.sh")
    assert "outside the lane's worktree" in refused("../agent.sh")
    # Committed with its executable bit: it passes, and runs in the lane's worktree.
    commit_file(
        seed_repo,
        "tools/agent.sh",
        '#!/bin/sh\necho x > x.txt && git add x.txt && git commit -q -m "from tools/agent.sh"\n',
    )
    git(seed_repo, "update-index", "--chmod=+x", "tools/agent.sh")
    git(seed_repo, "commit", "-q", "-m", "make it executable")
    plan = plan_file(tmp_path, '[[lane]]\nname = "a"\ntask = "t"\ncommand = ["./tools/agent.sh"]\n')
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json_lines(proc.stdout)[-1]["lanes"][0]["outcome"] == "submitted"
    assert git(seed_repo, "log", "-1", "--format=%s", f"lanes/{WAVE}/a") == "from tools/agent.sh"


# -- the keeper's log -----------------------------------------------------------------------


def test_the_log_keeps_head_and_tail_and_says_what_it_dropped(tmp_path: Path) -> None:
    log = keeper.BoundedLog(tmp_path / "agent.log", head=100, tail=1000)
    for i in range(5000):
        log.write(f"line {i:05d}\n".encode())
        assert (tmp_path / "agent.log").stat().st_size <= 100 + 2 * 1000 + 200
    log.close()
    text = (tmp_path / "agent.log").read_text()
    assert text.startswith("line 00000\n") and text.endswith("line 04999\n")
    assert f"{log.dropped} bytes of output dropped here" in text
    assert log.total == 5000 * 11 and log.dropped > 50000 - 2100


def test_the_log_follows_its_folder_when_the_claim_dir_is_archived(tmp_path: Path) -> None:
    """An agent that releases its lane moves the claim dir (and the log in it) to the
    archive while the keeper writes: the log, compactions included, goes on there."""
    claim_dir, archived = tmp_path / "claim", tmp_path / "archive"
    claim_dir.mkdir()
    log = keeper.BoundedLog(claim_dir / "agent.log", head=100, tail=1000)
    log.write(b"before the release\n")
    claim_dir.rename(archived)
    for i in range(500):  # past 2 * tail after the head: rewritten (a temp file, a rename)
        log.write(f"line {i:05d}\n".encode())
    log.close()
    assert not claim_dir.exists()  # nothing made again at the old place
    assert sorted(p.name for p in archived.iterdir()) == ["agent.log"]
    text = (archived / "agent.log").read_text()
    assert text.startswith("before the release\n") and text.endswith("line 00499\n")
    assert "bytes of output dropped here" in text


# -- every outcome, in one wave --------------------------------------------------------------


def test_each_agent_outcome_and_nothing_is_lost(seed_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = agent(tmp_path, "good", GOOD)
    contended = agent(
        tmp_path,
        "contended",
        """
sed -i 's/^version = "0.3.5"/version = "0.3.6"/' pyproject.toml
git commit -q -am "bump the version by hand"
""",
    )
    crash = agent(
        tmp_path,
        "crash",
        """
echo committed > kept.txt && git add kept.txt && git commit -q -m "work before the crash"
echo "half done" > uncommitted.txt
echo "about to crash" >&2
exit 3
""",
    )
    hang = agent(tmp_path, "hang", 'echo $$ > "$OUT/hang.pid"\nsleep 30\n')
    stubborn = agent(
        tmp_path,
        "stubborn",
        """
trap '' TERM
echo $$ > "$OUT/stubborn.pid"
while :; do sleep 0.1; done
""",
    )
    forks = agent(
        tmp_path,
        "forks",
        """
( trap '' TERM; while :; do echo x >> "$OUT/grandchild.txt"; sleep 0.05; done ) &
echo $! > "$OUT/grandchild.pid"
setsid sh -c 'echo $$ > "$1/escaped.pid"; while :; do echo y >> "$1/escaped.txt"; sleep 0.05; done' sh "$OUT" &
echo lane > lane.txt && git add lane.txt && git commit -q -m "the lane's work"
sleep 0.3
exit 0
""",
    )
    chatty = agent(
        tmp_path,
        "chatty",
        """
echo FIRST-LINE
yes "a chatty agent says the same thing again and again" | head -c 6000000
echo LAST-LINE
echo c > chatty.txt && git add chatty.txt && git commit -q -m "chatty work"
""",
    )
    dirty = agent(tmp_path, "dirty", "echo wip > wip.txt\nexit 0\n")
    # Executable, so the plan passes; but its interpreter does not exist: exec fails.
    nostart = agent(tmp_path, "nostart", "")
    Path(nostart).write_text("#!/no/such/interpreter\n", encoding="utf-8")
    code, _ = lanes_json(seed_repo, "claim", WAVE, "taken", "--agent", "bob")
    assert code == 0
    plan = plan_file(
        tmp_path,
        f"""
[defaults]
command = ["{good}"]
timeout = "20s"
grace = "1s"
env = {{ FEATURE = "from-the-plan" }}

[[lane]]
name = "1a"
task = "Add migration 31a."
owns = ["scripts/migrations/399_1a.sql"]

[[lane]]
name = "contended"
task = "t"
command = ["{contended}"]

[[lane]]
name = "crash"
task = "t"
command = ["{crash}"]

[[lane]]
name = "hang"
task = "t"
command = ["{hang}"]
timeout = "1s"

[[lane]]
name = "stubborn"
task = "t"
command = ["{stubborn}"]
timeout = "1s"

[[lane]]
name = "forks"
task = "t"
command = ["{forks}"]

[[lane]]
name = "chatty"
task = "t"
command = ["{chatty}"]

[[lane]]
name = "dirty"
task = "t"
command = ["{dirty}"]

[[lane]]
name = "taken"
task = "t"

[[lane]]
name = "nostart"
task = "t"
command = ["{nostart}"]
""",
    )
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--parallel", "4", "--json")
    assert proc.returncode == 4, proc.stderr
    events = json_lines(proc.stdout)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["outcome"] == "lanes-unfinished"
    got = {lane["lane"]: lane for lane in summary["lanes"]}
    assert {k: v["outcome"] for k, v in got.items()} == {
        "1a": "submitted",
        "contended": "submit-refused",
        "crash": "failed",
        "hang": "timeout",
        "stubborn": "timeout",
        "forks": "submitted",
        "chatty": "submitted",
        "dirty": "uncommitted",
        "taken": "held-elsewhere",
        "nostart": "cannot-start",
    }
    # It cannot be started: running again only helps once the command is fixed.
    assert "nostart.sh" in got["nostart"]["reason"] and not got["nostart"]["ran"]
    assert "fix lane[9].command in the plan" in got["nostart"]["reason"]
    # The agent got its brief and then its task on stdin, and the lane's environment.
    stdin = (out / "1a.stdin").read_text()
    assert "lane 1a of wave w1" in stdin and stdin.rstrip().endswith("Add migration 31a.")
    env = dict(
        line.split("=", 1) for line in (out / "1a.env").read_text().splitlines() if "=" in line
    )
    assert env["LANES_WAVE"] == WAVE and env["LANES_LANE"] == "1a"
    assert env["LANES_WORKTREE"] == got["1a"]["worktree"] and env["FEATURE"] == "from-the-plan"
    # A refused submit says how to recover, and the lane waits, claimed.
    refused = got["contended"]["error"]
    assert refused["error"] == "touches-contended-surface" and refused["restore"]
    assert any(e["event"] == "submit-refused" and e["lane"] == "contended" for e in events)
    # A crash, a timeout, uncommitted work: claimed, the work where it was.
    crash_wt = Path(got["crash"]["worktree"])
    assert (crash_wt / "uncommitted.txt").read_text() == "half done\n"
    assert git(crash_wt, "log", "-1", "--format=%s") == "work before the crash"
    assert "about to crash" in Path(got["crash"]["log"]).read_text()
    assert (Path(got["dirty"]["worktree"]) / "wip.txt").exists()
    assert "uncommitted" in got["dirty"]["reason"] and "wip.txt" in got["dirty"]["reason"]
    assert states(seed_repo) == {
        "1a": "submitted",
        "contended": "claimed",
        "crash": "claimed",
        "hang": "claimed",
        "stubborn": "claimed",
        "forks": "submitted",
        "chatty": "submitted",
        "dirty": "claimed",
        "taken": "claimed",
        "nostart": "claimed",
    }
    # No agent, no grandchild, not even one that left the group, is left running.
    for name in ("hang.pid", "stubborn.pid", "grandchild.pid", "escaped.pid"):
        (pid,) = pids(out, name)
        assert not alive(pid), name
    size = (out / "grandchild.txt").stat().st_size, (out / "escaped.txt").stat().st_size
    time.sleep(0.3)
    assert ((out / "grandchild.txt").stat().st_size, (out / "escaped.txt").stat().st_size) == size
    # The chatty agent's log is bounded, keeps both ends, and says what it dropped.
    chatty_log = Path(got["chatty"]["log"])
    assert chatty_log.stat().st_size < keeper.HEAD + 2 * keeper.TAIL + keeper.CHUNK + 1024
    text = chatty_log.read_text()
    assert text.startswith("FIRST-LINE\n") and "LAST-LINE\n" in text[-keeper.TAIL :]
    assert "bytes of output dropped here" in text
    # The ledger is whole, with an agent-start and an agent-exit for every agent that ran.
    ledger_ok(seed_repo)
    rows = ledger_rows(seed_repo)
    started = {r["lane"] for r in rows if r["event"] == "agent-start"}
    exits = {r["lane"]: r["details"] for r in rows if r["event"] == "agent-exit"}
    assert started == set(exits) - {"nostart"} == set(got) - {"taken", "nostart"}
    assert exits["nostart"]["outcome"] == "cannot-start"
    assert exits["crash"]["code"] == 3 and exits["crash"]["outcome"] == "failed"
    assert exits["hang"]["code"] == "timeout" and not exits["hang"]["killed"]
    assert exits["stubborn"]["code"] == "timeout" and exits["stubborn"]["killed"]
    assert exits["forks"]["leftovers"] and exits["1a"]["outcome"] == "submit"
    assert exits["chatty"]["log_dropped"] > 0
    assert [r["agent"] for r in rows if r["lane"] == "taken"] == ["bob"]  # left alone

    # Running again resumes: finished lanes are not run again; the crashed one restarts on
    # its branch, its commit kept (this time its agent finishes the work).
    fix = agent(tmp_path, "fix", 'git add uncommitted.txt && git commit -q -m "the rest"\n')
    again = plan_file(
        tmp_path,
        f'[defaults]\ncommand = ["{good}"]\n[[lane]]\nname = "1a"\ntask = "t"\n'
        f'[[lane]]\nname = "crash"\ntask = "t"\ncommand = ["{fix}"]\n',
        "again.toml",
    )
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(again), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lanes = {lane["lane"]: lane for lane in json_lines(proc.stdout)[-1]["lanes"]}
    assert lanes["1a"]["outcome"] == "submitted" and not lanes["1a"]["ran"]
    assert lanes["crash"]["outcome"] == "submitted" and lanes["crash"]["resumed"]
    assert git(crash_wt, "log", "--format=%s", "main..HEAD").splitlines() == [
        "the rest",
        "work before the crash",
    ]
    rows = ledger_rows(seed_repo)
    assert sum(1 for r in rows if r["event"] == "agent-start" and r["lane"] == "1a") == 1
    assert sum(1 for r in rows if r["event"] == "agent-start" and r["lane"] == "crash") == 2
    ledger_ok(seed_repo)


# -- where the lane is when its agent ends -----------------------------------------------------


def summary_lines(stdout: str) -> dict[str, str]:
    """The human summary's first line per lane: {lane: "outcome ...: reason"}."""
    found = {}
    for line in stdout.splitlines():
        if line and not line.startswith((" ", "lanes run")):
            lane, _, rest = line.partition(": ")
            found[lane] = rest
    return found


def test_released_idle_and_taken_lanes_are_said_as_they_are(
    seed_repo: Path, tmp_path: Path
) -> None:
    """An agent that releases its lane (then exits 0 or 1), one whose lane is claimed by
    someone else after it let go, one that does nothing, a lane held by another agent,
    one whose claim fails: each outcome, reason and closing word says where it really is."""
    quits = agent(
        tmp_path,
        "quits",
        """
echo "half a thought" > notes.txt
echo "giving up on $LANES_LANE"
$LANES release --json > /dev/null || exit 9
echo "still talking after the release"
exit $CODE
""",
    )
    hands_over = agent(
        tmp_path,
        "hands-over",
        """
$LANES release --json > /dev/null || exit 9
cd "$REPO" && $LANES claim w1 "$LANES_LANE" --agent eve --json > /dev/null || exit 8
""",
    )
    idle = agent(tmp_path, "idle", 'echo "nothing to do"\nexit 0\n')
    vanish = agent(tmp_path, "vanish", 'cd / && rm -rf "$LANES_WORKTREE"\n')
    code, _ = lanes_json(seed_repo, "claim", WAVE, "taken", "--agent", "bob")
    assert code == 0
    blocked = config.load(seed_repo).worktree_path(WAVE, "blocked")
    blocked.mkdir()  # a leftover directory where the worktree would go
    main_before = git(seed_repo, "rev-parse", "main")
    plan = plan_file(
        tmp_path,
        f"""
[defaults]
command = ["{quits}"]
env = {{ CODE = "0", REPO = "{seed_repo}" }}
[[lane]]
name = "quits"
task = "t"
[[lane]]
name = "quits-1"
task = "t"
env = {{ CODE = "1" }}
[[lane]]
name = "hands-over"
task = "t"
command = ["{hands_over}"]
[[lane]]
name = "idle"
task = "t"
command = ["{idle}"]
[[lane]]
name = "vanish"
task = "t"
command = ["{vanish}"]
[[lane]]
name = "taken"
task = "t"
[[lane]]
name = "blocked"
task = "t"
""",
    )
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--parallel", "4")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    said = summary_lines(proc.stdout)
    assert {lane: rest.split(" ")[0].rstrip(":") for lane, rest in said.items()} == {
        "quits": "released",
        "quits-1": "released",
        "hands-over": "held-elsewhere",
        "idle": "no-work",
        "vanish": "failed",
        "taken": "held-elsewhere",
        "blocked": "claim-failed",
    }, proc.stdout
    assert states(seed_repo) == {
        "quits": "released",
        "quits-1": "released",
        "hands-over": "claimed",  # by eve
        "idle": "claimed",
        "vanish": "claimed",
        "taken": "claimed",
    }
    for lane in ("quits", "quits-1", "hands-over"):
        assert "stays claimed" not in said[lane] and "is gone" not in said[lane]
    assert "exit 1" in said["quits-1"] and "held by eve since" in said["hands-over"]
    assert "the agent exited 0 but its worktree " in said["vanish"] and " is gone" in said["vanish"]
    # The claim dir, and the log with it, are in the archive: the paths printed are those.
    logs = [line.split("log: ", 1)[1] for line in proc.stdout.splitlines() if "  log: " in line]
    quits_log = next(Path(x) for x in logs if "/quits-released-" in x)
    text = quits_log.read_text()
    assert "giving up on quits" in text and "still talking after the release" in text
    assert (quits_log.parent / "claim.json").is_file() or any(quits_log.parent.iterdir())
    assert any(p.name.endswith("-uncommitted.patch") for p in quits_log.parent.iterdir())
    # Exit 0 without a commit or a fragment: not submitted, nothing landed, still claimed.
    assert "without a commit" in said["idle"] and "stays claimed" in said["idle"]
    rows = ledger_rows(seed_repo)
    assert not any(r["event"] == "submit" for r in rows)
    assert git(seed_repo, "rev-parse", "main") == main_before
    # The ledger's agent-exit says the same.
    exits = {r["lane"]: r["details"] for r in rows if r["event"] == "agent-exit"}
    assert {k: v["outcome"] for k, v in exits.items()} == {
        "quits": "released",
        "quits-1": "released",
        "hands-over": "held-elsewhere",
        "idle": "no-work",
        "vanish": "failed",
    }
    assert exits["quits-1"]["code"] == 1 and "released" in exits["quits-1"]["reason"]
    # The closing word is true of each lane.
    err = proc.stderr
    (kept,) = [line for line in err.splitlines() if "still claimed by this runner" in line]
    assert kept.split(":")[0].strip() == "idle"
    assert "taken: held by bob, not by this runner" in err
    assert "vanish: claimed by this runner's agent, but its worktree is gone: lanes release" in err
    assert "blocked: not claimed (worktree-path-exists)" in err
    assert "quits: released while its agent ran, no longer claimed" in err
    assert "they stay claimed with their work" not in err
    ledger_ok(seed_repo)


def test_a_resumed_lane_is_told_why_and_a_detached_head_loses_nothing(
    seed_repo: Path, tmp_path: Path
) -> None:
    """Exit 0 with HEAD off the branch is `off-branch`; on the rerun a HEAD that is the
    branch's tip is put back on it and its agent starts, one whose commits the branch lacks
    is not started at all; a resumed agent reads why the attempt before ended."""
    out = tmp_path / "out"
    first = agent(
        tmp_path,
        "first",
        """
echo "$LANES_LANE" > "$LANES_LANE.txt" && git add . && git commit -q -m "work of $LANES_LANE"
case "$LANES_LANE" in
  wander) git checkout -q --detach ;;
  astray) git checkout -q --detach HEAD~1 && echo x > x.txt && git add x.txt && git commit -q -m stray ;;
  crash) echo "half done" > half.txt; exit 1 ;;
esac
""",
    )
    again = agent(
        tmp_path,
        "again",
        'cat > "$OUT/$LANES_LANE.stdin"\ngit add -A && git commit -q -m "the rest" || true\n',
    )
    lanes3 = '[[lane]]\nname = "wander"\ntask = "t"\n[[lane]]\nname = "astray"\ntask = "t"\n'
    lanes3 += '[[lane]]\nname = "crash"\ntask = "t"\n'
    plan = plan_file(tmp_path, f'[defaults]\ncommand = ["{first}"]\n' + lanes3)
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--parallel", "3", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    got = {x["lane"]: x for x in json_lines(proc.stdout)[-1]["lanes"]}
    assert [got[x]["outcome"] for x in ("wander", "astray", "crash")] == [
        "off-branch",
        "off-branch",
        "failed",
    ]
    wander = got["wander"]["reason"]
    assert wander.startswith("the agent exited 0 but its worktree's HEAD is detached at ")
    assert f"not on the lane's branch lanes/{WAVE}/wander" in wander
    assert "puts it back on" in wander and "stays claimed" in wander
    assert "would leave commits behind" in got["astray"]["reason"]
    exits = {r["lane"]: r["details"] for r in ledger_rows(seed_repo) if r["event"] == "agent-exit"}
    assert exits["wander"]["outcome"] == "off-branch" and exits["crash"]["reason"]

    stray = git(Path(got["astray"]["worktree"]), "rev-parse", "HEAD")
    plan = plan_file(tmp_path, f'[defaults]\ncommand = ["{again}"]\n' + lanes3, "again.toml")
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--parallel", "3", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    got = {x["lane"]: x for x in json_lines(proc.stdout)[-1]["lanes"]}
    # HEAD was the branch's tip: back on the branch, nothing moved, the agent ran.
    assert got["wander"]["outcome"] == "submitted" and got["wander"]["resumed"]
    assert any("put back on" in w for w in got["wander"]["warnings"])
    assert "put back on lanes/w1/wander" in (out / "wander.stdin").read_text()
    # HEAD held a commit the branch lacks: not started, HEAD left where it was.
    assert got["astray"]["outcome"] == "off-branch" and not got["astray"]["ran"]
    assert "not started" in got["astray"]["reason"] and "git switch -C" in got["astray"]["reason"]
    assert git(Path(got["astray"]["worktree"]), "rev-parse", "HEAD") == stray
    assert not (out / "astray.stdin").exists()
    starts = [r["lane"] for r in ledger_rows(seed_repo) if r["event"] == "agent-start"]
    assert starts.count("astray") == 1 and starts.count("wander") == 2
    # The resumed agent is told it is resumed, how the attempt before ended, what is left.
    told = (out / "crash.stdin").read_text()
    resumed = told.split("# This lane is resumed", 1)[1].split("# Your task", 1)[0]
    assert "failed (exit 1): the agent failed (exit 1)" in resumed
    assert "work of crash" in resumed and "half.txt" in resumed and "agent.prev.log" in resumed
    assert got["crash"]["outcome"] == "submitted"
    ledger_ok(seed_repo)


def test_a_failing_setup_is_claim_failed_exit_4_as_the_docs_say(
    seed_repo: Path, tmp_path: Path
) -> None:
    import re

    from lanes.errors import REGISTRY

    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[tool.lanes.setup]\ncommands = ["false"]\n')
    good = agent(tmp_path, "good", GOOD)
    plan = plan_file(tmp_path, f'[[lane]]\nname = "a"\ntask = "t"\ncommand = ["{good}"]\n')
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    summary = json_lines(proc.stdout)[-1]
    (lane,) = summary["lanes"]
    assert (lane["outcome"], lane["error"]["error"]) == ("claim-failed", "setup-failed")
    assert summary["outcome"] == "lanes-unfinished" and not lane["ran"]
    # docs/exit-codes.md's run row says so: exit 4, not 1; and so does the registry.
    doc = (Path(__file__).parent.parent / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    (row,) = [line for line in doc.splitlines() if line.startswith("| `run` |")]
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
    assert "setup" not in cells[2]  # exit 1 is the run's own failure, never one lane's
    for outcome in ("claim-failed", "no-work", "released", "off-branch", "cannot-start"):
        assert outcome in cells[5] and outcome in REGISTRY["lanes-unfinished"].meaning


# -- the core, directly; then integrate and verify -------------------------------------------


def test_the_core_emits_each_step_keeps_the_heartbeat_then_integrates_and_gates(
    seed_repo: Path, tmp_path: Path
) -> None:
    pyproject = (seed_repo / "pyproject.toml").read_text()
    commit_file(
        seed_repo, "pyproject.toml", pyproject.replace('stale_after = "30m"', 'stale_after = "3s"')
    )
    if config.load(seed_repo).settings.remote:  # main where the truth lives, as a user pushes it
        git(seed_repo, "push", "-q", "origin", "main")
    slow = agent(
        tmp_path,
        "slow",
        GOOD.replace(
            'echo "done with',
            'b=$(stat -c %Y "$HB"); sleep 2.6; a=$(stat -c %Y "$HB"); echo "$b $a" > "$OUT/beats"\necho "done with',
        ),
    )
    good = agent(tmp_path, "good", GOOD)
    inbox = seed_repo / "tools/offline/_inbox" / WAVE
    plan = wave_plan.load(
        plan_file(
            tmp_path,
            f"""
[defaults]
command = ["{good}"]
[[lane]]
name = "1a"
task = "t"
command = ["{slow}"]
env = {{ HB = "{inbox}/1a/heartbeat", MIG = "301" }}
[[lane]]
name = "1b"
task = "t"
env = {{ MIG = "302" }}
""",
        )
    )
    cfg = config.load(seed_repo)
    events: list[dict[str, Any]] = []
    result = runner.run(cfg, WAVE, plan, 2, events.append)
    assert result.finished and [r.outcome for r in result.lanes] == ["submitted", "submitted"]
    for lane in ("1a", "1b"):
        steps = [e["event"] for e in events if e.get("lane") == lane and e["event"] != "progress"]
        assert steps == ["claim", "agent-start", "agent-exit", "submit", "lane-result"], steps
    assert any(e["event"] == "progress" and e["lane"] == "1a" for e in events)
    before, after = map(int, (tmp_path / "out" / "beats").read_text().split())
    assert after > before  # the runner heartbeat the lane while its agent ran
    # The same plan again, with the pass and the gate: nothing runs, both lanes land.
    proc = run_lanes(
        seed_repo, "run", WAVE, "--plan", str(plan.path), "--integrate", "--verify", "--json"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json_lines(proc.stdout)[-1]
    assert sorted(summary["integrate"]["integrated"]) == ["1a", "1b"]
    assert summary["verify"]["ok"] and summary["outcome"] == "done"
    assert [lane["outcome"] for lane in summary["lanes"]] == ["integrated", "integrated"]
    manifest = git(seed_repo, "show", "main:scripts/migrations/autonomath_boot_manifest.txt")
    assert "301_1a.sql" in manifest and "302_1b.sql" in manifest
    ledger_ok(seed_repo)


# -- a second runner, kill -9, the rerun -------------------------------------------------------


STICKY = """
echo $$ > "$OUT/$LANES_LANE.pid"
( while :; do sleep 0.05; done ) &
echo $! > "$OUT/$LANES_LANE.child.pid"
if [ ! -f work.txt ]; then
  echo "$LANES_LANE" > work.txt && git add work.txt && git commit -q -m "work of $LANES_LANE"
fi
while [ -f "$OUT/hold" ]; do sleep 0.05; done
kill $! 2>/dev/null
exit 0
"""


def test_kill_9_of_the_runner_takes_its_agents_and_a_rerun_finishes_once(
    seed_repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sticky = agent(tmp_path, "sticky", STICKY)
    (out / "hold").write_text("")
    plan = plan_file(
        tmp_path,
        f'[defaults]\ncommand = ["{sticky}"]\ntimeout = "60s"\ngrace = "1s"\n'
        '[[lane]]\nname = "a"\ntask = "t"\n[[lane]]\nname = "b"\ntask = "t"\n',
    )
    with open(tmp_path / "first.jsonl", "w") as first_out:
        first = subprocess.Popen(
            [*LANES, "run", WAVE, "--plan", str(plan), "--json"],
            cwd=seed_repo,
            stdout=first_out,
            stderr=subprocess.DEVNULL,
        )
    try:
        wait_for(lambda: len(pids(out, "*.child.pid")) == 2, 15, "both agents and children up")
        # Both committed before they hung.
        wait_for(
            lambda: all(
                "work of" in git(seed_repo, "log", "-1", "--format=%s", f"lanes/{WAVE}/{x}")
                for x in "ab"
            ),
            10,
            "both agents committed",
        )
        second = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--json")
        assert second.returncode == 3
        assert json.loads(second.stdout)["error"] == "runner-running"
        procs = pids(out, "?.pid") + pids(out, "*.child.pid")
        assert len(procs) == 4 and all(alive(p) for p in procs)
        first.send_signal(signal.SIGKILL)
        first.wait()
        wait_for(lambda: not any(alive(p) for p in procs), 5, "every agent and child gone")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert states(seed_repo) == {"a": "claimed", "b": "claimed"}
    base = containment.cgroup_base()
    # kill -9: its cgroups are left behind, empty (a runner of another test may sweep them)
    left = sorted(base.glob(f"lanes-{first.pid}-*")) if base else []
    for cg in left:
        with contextlib.suppress(FileNotFoundError):
            assert (cg / "cgroup.procs").read_text().strip() == "", cg
    (out / "hold").unlink()
    for p in out.glob("*.pid"):
        p.unlink()
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lanes = json_lines(proc.stdout)[-1]["lanes"]
    assert [(x["outcome"], x["resumed"]) for x in lanes] == [("submitted", True)] * 2
    assert not any(p.exists() for p in left)  # the rerun swept the dead runner's cgroups
    rows = ledger_rows(seed_repo)
    for lane in "ab":
        assert sum(1 for r in rows if r["event"] == "submit" and r["lane"] == lane) == 1
        assert sum(1 for r in rows if r["event"] == "agent-start" and r["lane"] == lane) == 2
        assert sum(1 for r in rows if r["event"] == "claim" and r["lane"] == lane) == 1
        # the first run's commit is the lane's one commit: restarted on its branch
        assert (
            git(seed_repo, "log", "--format=%s", f"main..lanes/{WAVE}/{lane}") == f"work of {lane}"
        )
    ledger_ok(seed_repo)


# -- an agent against its keeper ----------------------------------------------------------------

FREEZE = """
echo $$ > "$OUT/freeze.pid"
echo $PPID > "$OUT/freeze.keeper.pid"
( setsid sh -c 'echo $$ > "$1"; exec sleep 1236' sh "$OUT/freeze.escaped.pid" & )
kill -STOP $PPID
sleep 1236
"""
KILL = """
echo $$ > "$OUT/kill.pid"
echo $PPID > "$OUT/kill.keeper.pid"
( setsid sh -c 'echo $$ > "$1"; exec sleep 1234' sh "$OUT/kill.escaped.pid" & )
sh -c 'echo $$ > "$1"; exec sleep 1235' sh "$OUT/kill.sleep.pid" &
sleep 0.2
kill -9 $PPID
exit 0
"""
POKES = """
for s in INT QUIT USR1 USR2 ALRM TSTP TTIN TTOU VTALRM PROF PIPE XCPU; do kill -$s $PPID; done
grep SigIgn /proc/$$/status > "$OUT/pokes.sigign"
echo p > p.txt && git add p.txt && git commit -q -m "work after poking the keeper"
"""


def test_an_agent_that_stops_or_kills_its_keeper_is_killed_with_all_it_started(
    seed_repo: Path, tmp_path: Path
) -> None:
    """The audit's two attacks: `kill -STOP $PPID` then sleep (the timeout would never
    fire, the heartbeat would go on), and a double-forked `setsid` sleep then `kill -9
    $PPID` (its processes would outlive it under init). Both lanes end as keeper-lost, at
    once, with no process of theirs left; signals an agent may catch change nothing."""
    out = tmp_path / "out"
    freeze, kill, pokes = (
        agent(tmp_path, n, body)
        for n, body in (("freeze", FREEZE), ("kill", KILL), ("pokes", POKES))
    )
    plan = plan_file(
        tmp_path,
        f'[defaults]\ntimeout = "5s"\ngrace = "1s"\n'
        f'[[lane]]\nname = "freeze"\ntask = "t"\ncommand = ["{freeze}"]\n'
        f'[[lane]]\nname = "kill"\ntask = "t"\ncommand = ["{kill}"]\n'
        f'[[lane]]\nname = "pokes"\ntask = "t"\ncommand = ["{pokes}"]\n',
    )
    proc = run_lanes(seed_repo, "run", WAVE, "--plan", str(plan), "--parallel", "3", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    got = {x["lane"]: x for x in json_lines(proc.stdout)[-1]["lanes"]}
    assert {k: v["outcome"] for k, v in got.items()} == {
        "freeze": "keeper-lost",
        "kill": "keeper-lost",
        "pokes": "submitted",
    }
    assert "its keeper was stopped" in got["freeze"]["reason"]
    assert "its keeper ended without a report" in got["kill"]["reason"]
    for lane in ("freeze", "kill"):
        assert "stays claimed with its work" in got[lane]["reason"]
        assert got[lane]["seconds"] < 5 + 2 * 1 + runner._MARGIN  # never the runner's limit
    caged = containment.cgroup_base() is not None
    left = []
    for name in ("freeze", "freeze.keeper", "freeze.escaped", "kill", "kill.keeper", "kill.sleep"):
        (pid,) = pids(out, f"{name}.pid")
        left += [name] if alive(pid) else []
    (escaped,) = pids(out, "kill.escaped.pid")
    if caged:  # root here: each agent had a cgroup, which held even the double fork
        left += ["kill.escaped"] if alive(escaped) else []
        assert not got["kill"]["reason"].count("could not be found")
        base = containment.cgroup_base()
        assert base is not None
        for lane in ("freeze", "kill", "pokes"):  # (other tests may run at the same time)
            assert not list(base.glob(f"lanes-*-{WAVE}-{lane}")), lane
    else:  # its keeper dead, nothing could find it: the reason says so
        assert "could not be found, and may still run" in got["kill"]["reason"]
        os.kill(escaped, signal.SIGKILL)
    assert left == []
    # The keeper ignored what an agent may send it; the agent's own signals were its own.
    # (signals Python cannot handle, which glibc keeps for itself, pass through as inherited)
    ignored = int((out / "pokes.sigign").read_text().split()[1], 16)
    settable = sum(1 << (int(sig) - 1) for sig in signal.valid_signals())
    assert ignored & settable == 0, hex(ignored)
    exits = {r["lane"]: r["details"] for r in ledger_rows(seed_repo) if r["event"] == "agent-exit"}
    assert exits["freeze"]["outcome"] == exits["kill"]["outcome"] == "keeper-lost"
    assert exits["freeze"]["killed"] and exits["kill"]["leftovers"]
    assert states(seed_repo) == {"freeze": "claimed", "kill": "claimed", "pokes": "submitted"}
    ledger_ok(seed_repo)


def test_a_keeper_that_hangs_is_ended_at_the_runners_own_deadline_and_on_sigterm(
    seed_repo: Path, tmp_path: Path
) -> None:
    """A keeper alive but deaf (hung at a failpoint right after it started its agent):
    past timeout + 2 x grace + the margin, the runner kills it and its agent itself
    (`timeout`); after SIGTERM, by 2 x grace + the margin (`interrupted`, exit 130)."""
    out = tmp_path / "out"
    hangs = agent(
        tmp_path,
        "hangs",
        'echo $$ > "$OUT/$LANES_LANE.pid"\necho $PPID > "$OUT/$LANES_LANE.keeper.pid"\nsleep 1236\n',
    )
    plan = plan_file(
        tmp_path,
        f'[defaults]\ncommand = ["{hangs}"]\ngrace = "0s"\n'
        '[[lane]]\nname = "late"\ntask = "t"\ntimeout = "1s"\n'
        '[[lane]]\nname = "held"\ntask = "t"\ntimeout = "60s"\n',
    )
    env = {**os.environ, "LANES_FAILPOINT": f"keeper-started:wait:{tmp_path / 'never'}"}
    events = []
    stopped_at = 0.0
    with (
        open(tmp_path / "stderr", "wb") as err,
        subprocess.Popen(
            [*LANES, "run", WAVE, "--plan", str(plan), "--parallel", "2", "--json"],
            cwd=seed_repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        ) as first,
    ):
        assert first.stdout is not None
        try:
            for raw in first.stdout:
                events.append(json.loads(raw))
                if [e["event"] for e in events].count("agent-start") == 2 and not stopped_at:
                    # SIGTERM once "late" is past its timeout, before its deadline: "late"
                    # still ends at its deadline, "held" by the stop's
                    time.sleep(1.5)
                    first.send_signal(signal.SIGTERM)
                    stopped_at = time.monotonic()
            code = first.wait(30)
            ended = time.monotonic()
        finally:
            if first.poll() is None:
                first.kill()
    assert code == 130, (tmp_path / "stderr").read_text()
    got = {x["lane"]: x for x in events[-1]["lanes"]}
    late, held = got["late"], got["held"]
    assert (late["outcome"], held["outcome"]) == ("timeout", "interrupted"), events[-1]
    assert 1 <= late["seconds"] < 1 + runner._MARGIN + 2
    assert "its keeper did not end it in time: the runner killed" in late["reason"]
    assert "stopped by SIGTERM, and its keeper did not end it in time" in held["reason"]
    assert ended - stopped_at < runner._MARGIN + 2  # not the 60 s of its timeout
    for lane in ("late", "held"):
        for name in (lane, f"{lane}.keeper"):
            (pid,) = pids(out, f"{name}.pid")
            assert not alive(pid), name
    exits = {r["lane"]: r["details"] for r in ledger_rows(seed_repo) if r["event"] == "agent-exit"}
    assert exits["late"]["code"] == "timeout" and exits["late"]["killed"]
    ledger_ok(seed_repo)


def test_containment_finds_the_session_the_group_and_the_descendants(tmp_path: Path) -> None:
    """Without a cgroup: a stopped stand-in keeper (a session leader), a child in another
    process group, one in a session of its own whose parent lives: all found and killed,
    the keeper last; with no subreaper, the reason says what could not be guaranteed.
    With a cgroup (where the runner may write one): even an orphan that left the session."""
    script = (
        'sleep 1231 & echo $! > "$1/a"; '
        '(set -m; sleep 1232 & echo $! > "$1/b"; wait) & '
        'setsid sh -c \'echo $$ > "$1/c"; sleep 1233 & echo $! > "$1/d"; wait\' sh "$1" & '
        "sleep 0.3; kill -STOP $$"
    )
    stand_in = subprocess.Popen(["sh", "-c", script, "sh", str(tmp_path)], start_new_session=True)
    wait_for(lambda: containment.state(stand_in.pid) == "T", 10, "the stand-in stopped")
    found = [int((tmp_path / x).read_text()) for x in "abcd"]
    assert all(alive(p) for p in found)
    assert len({containment.session_of(p) for p in found}) == 2  # c and d left the session
    pen = containment.Containment(None)
    pen.keeper = stand_in.pid
    assert pen.kill() >= 4
    stand_in.wait(5)
    assert not any(alive(p) for p in found)
    assert "may still run" in pen.unguaranteed()  # no subreaper said: orphans could escape

    pen = containment.Containment.make(WAVE, "probe")
    if pen.cgroup is None:
        return
    script = (
        'echo 0 > "$2/cgroup.procs" || exit 7; '
        '( setsid sh -c \'echo $$ > "$1/orphan"; exec sleep 1234\' sh "$1" & ); sleep 1235'
    )
    stand_in = subprocess.Popen(["sh", "-c", script, "sh", str(tmp_path), str(pen.cgroup)])
    wait_for(
        lambda: (tmp_path / "orphan").is_file() and (tmp_path / "orphan").read_text() != "",
        10,
        "the orphan",
    )
    orphan = int((tmp_path / "orphan").read_text())
    assert containment.session_of(orphan) == orphan  # out of every session but its own
    os.kill(stand_in.pid, signal.SIGKILL)  # the keeper dies first: nothing but the cgroup knows
    stand_in.wait(5)
    pen.keeper, pen.joined = stand_in.pid, True
    pen.kill()
    assert not alive(orphan) and pen.unguaranteed() == ""
    pen.remove()
    assert not pen.cgroup.exists()


# -- Ctrl-C on a real terminal ----------------------------------------------------------------


def _read_until(fd: int, buf: bytearray, cond: Callable[[], bool], seconds: float) -> bool:
    until = time.monotonic() + seconds
    while not cond():
        left = until - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the other side closed
                return cond()
            if not data:
                return cond()
            buf += data
    return True


def test_ctrl_c_on_a_terminal_stops_every_agent_and_exits_130(
    seed_repo: Path, tmp_path: Path
) -> None:
    import fcntl
    import struct
    import termios

    out = tmp_path / "out"
    sleepy = agent(
        tmp_path, "sleepy", 'echo $$ > "$OUT/$LANES_LANE.pid"\necho "working on it"\nsleep 60\n'
    )
    stubborn = agent(
        tmp_path,
        "stubborn",
        "trap '' TERM\necho $$ > \"$OUT/$LANES_LANE.pid\"\nwhile :; do sleep 0.1; done\n",
    )
    plan = plan_file(
        tmp_path,
        f'[defaults]\ncommand = ["{sleepy}"]\ngrace = "1s"\n'
        f'[[lane]]\nname = "a"\ntask = "t"\n[[lane]]\nname = "b"\ntask = "t"\ncommand = ["{stubborn}"]\n'
        '[[lane]]\nname = "c"\ntask = "t"\n',
    )
    # 80 columns: the summary's paths, the one thing the user needs, must come out whole.
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "40"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the runner, on the terminal
        os.chdir(seed_repo)
        os.execvpe(LANES[0], [*LANES, "run", WAVE, "--plan", str(plan), "--parallel", "2"], env)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
        buf = bytearray()
        assert _read_until(
            fd, buf, lambda: len(pids(out, "*.pid")) == 2 and b"running" in buf, 20
        ), buf.decode(errors="replace")
        assert b"lanes run w1" in buf and b"\x1b[" in buf  # the live table, redrawn in place
        procs = pids(out, "*.pid")
        os.write(fd, b"\x03")  # Ctrl-C, as the terminal sends it
        _read_until(fd, buf, lambda: False, 15)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    text = buf.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 130, text
    assert not any(alive(p) for p in procs)
    assert "stopping every agent" in text and "interrupted" in text
    cfg = config.load(seed_repo)
    for lane in ("a", "b"):
        assert f"worktree: {cfg.worktree_path(WAVE, lane)}\r\n" in text, text
        assert f"log: {cfg.claim_dir(WAVE, lane) / 'agent.log'}\r\n" in text, text
    assert len(str(cfg.claim_dir(WAVE, "a") / "agent.log")) > 80  # longer than a line
    assert states(seed_repo) == {"a": "claimed", "b": "claimed"}  # c never started
    rows = ledger_rows(seed_repo)
    exits = {r["lane"]: r["details"] for r in rows if r["event"] == "agent-exit"}
    assert exits["a"]["outcome"] == exits["b"]["outcome"] == "interrupted"
    assert exits["b"]["killed"] and not exits["a"]["killed"]
    ledger_ok(seed_repo)
