"""kill -9 the pass at each line that writes, and at random instants, again and again:
every lane still lands exactly once, every entry is there once, the version moves once,
no fragment is lost, main has no merge commit and nothing is left to trip the next run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from integrator import checkout, integrate
from lanes import claims, scaffold, state
from lanes.config import Config
from lanes.surfaces import manifest as manifest_surface
from tests.conftest import LANDING_POINTS, MAIN_MOVED, git, main_of, run_lanes
from tests.test_batches import configure
from tests.test_integrate import (
    WAVE,
    bumps_on_main,
    events,
    landed_lanes,
    make_lane,
    manifest_frag,
    migration,
    scratch_worktrees,
    show,
    step,
    version_frag,
)

# In the order the pass reaches them; before MAIN_MOVED ("cas", on a remote
# "remote-landed") main has not moved.
FAILPOINTS = [
    "locked",
    "started",
    "landed",  # a lane landed in the object store
    "journal",
    *LANDING_POINTS,
    "archived",
]
BEFORE_CAS = FAILPOINTS[: FAILPOINTS.index(MAIN_MOVED)]
# With a test command, batches and two test jobs, all before the compare-and-swap: a test
# worktree made, two stacks under test at once, a run finished, a bisection step.
TEST_POINTS = ["scratch", "speculating", "tested", "bisected"]
POISONED = (
    'for f in src/poison_*.py; do [ -e "$f" ] && { echo "poisoned by $f"; exit 1; }; done; exit 0'
)


class Wave:
    """What was asked of a wave, to check against what main and the ledger say."""

    def __init__(self) -> None:
        self.lands: list[str] = []
        self.bounces: list[str] = []
        self.entries: list[str] = []
        self.fragments: dict[str, int] = {}

    def lane(
        self,
        cfg: Config,
        lane: str,
        number: int,
        *,
        app: bool = False,
        clash: bool = False,
        poison: bool = False,
    ) -> None:
        """A lane with a commit and three fragments. `app` lanes rewrite the line of
        src/app.py the seed has: the first to land wins, a later `clash` one bounces; a
        `poison` lane fails the POISONED test."""
        files, entry = migration(lane, number)
        files[f"src/{lane}.py"] = f"{lane}\n"
        if app or clash:
            files["src/app.py"] = f'"""{lane} was here."""\n'
        if poison:
            files[f"src/poison_{lane.replace('-', '_')}.py"] = "x\n"
        frags = [manifest_frag(entry), version_frag("minor"), step(f"step-{lane}")]
        make_lane(cfg, lane, files, frags)
        (self.bounces if clash or poison else self.lands).append(lane)
        if not (clash or poison):
            self.entries.append(entry)
        self.fragments[lane] = len(frags)


def check_exactly_once(cfg: Config, wave: Wave) -> None:
    repo = cfg.main_checkout
    assert Counter(landed_lanes(repo)) == Counter(wave.lands)  # each lane once on main
    assert git(repo, "rev-list", "--merges", "main") == ""
    entries = manifest_surface.entries(show(repo, scaffold.MANIFEST))
    assert Counter(entries) == Counter([*scaffold.REQUIRED, *wave.entries])  # each once
    assert entries == sorted(entries, key=manifest_surface.order_key)
    assert bumps_on_main(repo) == ["minor 0.3.5 -> 0.4.0"]  # the version moved once
    assert json.loads(show(repo, "server.json"))["version"] == "0.4.0"
    deploy_text = show(repo, ".github/workflows/deploy.yml")
    for lane in wave.lands:
        assert deploy_text.count(f"name: step-{lane}\n") == 1, lane  # appended once
    for lane in wave.bounces:
        assert f"step-{lane}" not in deploy_text
    # nothing left behind to trip the next run
    assert scratch_worktrees(cfg) == []
    scratch = cfg.state_dir / integrate.SCRATCH
    assert not scratch.exists() or list(scratch.iterdir()) == []
    assert not (cfg.state_dir / checkout.JOURNAL).exists()
    # the ledger is level with main, once per lane, and its chain is whole
    assert Counter(ev.lane for ev in events(cfg, "integrated")) == Counter(wave.lands)
    assert Counter(ev.lane for ev in events(cfg, "bounced")) == Counter(wave.bounces)
    assert claims.ledger(cfg, WAVE).verify().ok
    hist = state.histories(cfg, WAVE)
    assert {lane: hist[lane].state for lane in wave.lands} == dict.fromkeys(
        wave.lands, "integrated"
    )
    # no fragment lost: applied ones archived, bounced ones where they were
    for lane, count in wave.fragments.items():
        claim_dir = cfg.claim_dir(WAVE, lane)
        applied = claim_dir / "fragments.applied"
        pending = list((claim_dir / "fragments").iterdir())
        if lane in wave.lands:
            assert pending == [] and len(list(applied.iterdir())) == count, lane
        else:
            assert len(pending) == count, lane
    # the user's checkout is on main, at main, clean
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


@pytest.mark.parametrize("point", FAILPOINTS)
def test_killed_at_each_write_then_rerun(point: str, cfg: Config, seed_repo: Path) -> None:
    wave = Wave()
    wave.lane(cfg, "a", 261)
    wave.lane(cfg, "b", 262, app=True)
    wave.lane(cfg, "clash", 263, clash=True)
    wave.lane(cfg, "c", 264)
    old = git(seed_repo, "rev-parse", "main")
    killed = run_lanes(seed_repo, "integrate", WAVE, "--json", env={"LANES_FAILPOINT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    now = main_of(seed_repo)  # on a remote, origin's: the pass may be killed before it follows
    if point in BEFORE_CAS:
        assert now == old and landed_lanes(seed_repo, head=now) == []  # nothing anyone sees
    else:
        assert landed_lanes(seed_repo, head=now) == wave.lands  # all of it, consistently
    rerun = run_lanes(seed_repo, "integrate", WAVE, "--json")
    doc = json.loads(rerun.stdout)
    assert rerun.returncode == 4, rerun.stderr  # "clash" bounced; the rest landed
    assert [b["lane"] for b in doc["bounced"]] == ["clash"]
    if point in BEFORE_CAS:
        assert doc["integrated"] == wave.lands and doc["reconciled"] == []
    else:
        assert doc["integrated"] == [] and doc["head"] == now
    check_exactly_once(cfg, wave)


@pytest.mark.parametrize("point", TEST_POINTS)
def test_killed_while_testing_in_batches_then_rerun(point: str, seed_repo: Path) -> None:
    cfg = configure(seed_repo, POISONED, batch=2, test_jobs=2)
    wave = Wave()
    wave.lane(cfg, "a", 261)
    wave.lane(cfg, "b", 262, app=True)
    wave.lane(cfg, "clash", 263, clash=True)
    wave.lane(cfg, "p", 264, poison=True)
    wave.lane(cfg, "c", 265)
    old = git(seed_repo, "rev-parse", "main")
    killed = run_lanes(seed_repo, "integrate", WAVE, "--json", env={"LANES_FAILPOINT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert git(seed_repo, "rev-parse", "main") == old and landed_lanes(seed_repo) == []
    rerun = run_lanes(seed_repo, "integrate", WAVE, "--json")
    doc = json.loads(rerun.stdout)
    assert rerun.returncode == 4, rerun.stderr
    assert sorted(b["lane"] for b in doc["bounced"]) == ["clash", "p"]
    assert {b["lane"]: b["reason"] for b in doc["bounced"]}["p"] == "test-failed"
    assert doc["integrated"] == wave.lands and doc["reconciled"] == []
    check_exactly_once(cfg, wave)


def _wait_for_group(pgid: int, timeout: float = 20.0) -> None:
    """After the kill, let the git commands the pass had started finish on their own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process group {pgid} still alive after {timeout}s")


def test_random_kill_9_again_and_again(seed_repo: Path) -> None:
    # a pass long enough to be hit anywhere: tests that take a while, in stacks of two, two
    # at once, and a lane that breaks them now and then (bisections)
    cfg = configure(seed_repo, "sleep 0.1; " + POISONED, batch=2, test_jobs=2)
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    wave = Wave()
    killed = finished = 0
    number = 300
    for i in range(8):
        for k in range(2):  # new work arrives between the crashes
            number += 1
            wave.lane(
                cfg,
                f"r{i}-{k}",
                number,
                app=(i, k) == (3, 0),
                clash=(i, k) == (3, 1),
                poison=(i, k) in ((1, 1), (5, 0)),
            )
        proc = subprocess.Popen(
            [sys.executable, "-m", "lanes", "integrate", WAVE, "--json"],
            cwd=seed_repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.05, 0.9))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        else:
            finished += 1
        proc.wait()
        _wait_for_group(proc.pid)
    final = run_lanes(seed_repo, "integrate", WAVE, "--json")
    assert final.returncode in (0, 4), (seed, final.stderr)
    print(f"seed {seed}: {killed} killed, {finished} finished before the kill")
    assert killed >= 3, f"seed {seed}: only {killed} of 8 runs were killed"
    check_exactly_once(cfg, wave)
