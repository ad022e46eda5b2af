"""A claimer killed with kill -9 at any instant leaves no lane stuck and nothing lost:
after gc (once the claim is stale), the lane can be claimed again, and the ledger is whole."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from lanes import claims, config, gc, state
from tests.conftest import LANES, git, go_stale, lanes_json, origin_of

KILLS = 16


def _make_everything_stale(cfg: config.Config) -> None:
    old = time.time() - 10 * cfg.stale_after_seconds
    for wave_dir in cfg.inbox.iterdir() if cfg.inbox.exists() else ():
        for entry in wave_dir.iterdir():
            os.utime(entry, (old, old))  # half-built .claiming-* dirs
            heartbeat = entry / claims.HEARTBEAT
            if heartbeat.exists():
                os.utime(heartbeat, (old, old))
    bare = origin_of(cfg.main_checkout)
    if bare is not None:  # on a remote the heartbeat is the claim ref's commit time
        refs = git(bare, "for-each-ref", "--format=%(refname)", "refs/lanes/").split()
        for ref in refs:  # refs/lanes/<wave>/claims/<lane>, /ledger, /integrator
            parts = ref.split("/")
            if len(parts) == 5 and parts[3] == "claims":
                go_stale(cfg, parts[2], parts[4], int(old))


@pytest.mark.slow
def test_claimers_killed_at_random_instants_leave_no_lane_stuck(
    seed_repo: Path, cfg: config.Config
) -> None:
    rng = random.Random(20261129)
    # Each kill on a fresh wave, so the very first claim of a wave is hit too.
    for i in range(KILLS):
        proc = subprocess.Popen(
            [*LANES, "claim", f"k{i}", "a", "--agent", f"dead-{i}", "--json"],
            cwd=seed_repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.7))
        proc.kill()
        proc.wait()
    _make_everything_stale(cfg)
    gc.gc(cfg)
    for i in range(KILLS):
        wave = f"k{i}"
        rc, doc = lanes_json(seed_repo, "claim", wave, "a", "--agent", "alive")
        assert rc == 0, (wave, doc)
        worktree = Path(doc["worktree"])
        assert (worktree / "pyproject.toml").is_file()  # a real, filled worktree
        assert state.lane_state(cfg, wave, "a") == "claimed"
        rc, doc = lanes_json(seed_repo, "ledger", "verify", wave)
        assert rc == 0, (wave, doc)
    leftovers = [p.name for p in cfg.inbox.glob("*/.claiming-*")]
    assert leftovers == []
    rc, doc = lanes_json(seed_repo, "status")
    assert rc == 0 and {(row["wave"], row["agent"]) for row in doc["lanes"]} == {
        (f"k{i}", "alive") for i in range(KILLS)
    }
