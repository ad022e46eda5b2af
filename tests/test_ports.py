"""The port registry: a slot of `ports` ports a live lane, never one port twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from lanes import claims, config, ports
from tests.conftest import LANES, commit_file, go_stale, lanes_json, run_lanes, snapshot


def with_ports(repo: Path, count: int, port_range: str) -> config.Config:
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text()
        + f'\n[tool.lanes.setup]\nports = {count}\nport_range = "{port_range}"\n'
    )
    return config.load(repo)


def claim(repo: Path, lane: str, wave: str = "w1") -> tuple[int, dict]:  # type: ignore[type-arg]
    return lanes_json(repo, "claim", wave, lane, "--agent", f"agent-{lane}")


def test_32_racing_claims_never_share_a_port(seed_repo: Path, worktree_root: Path) -> None:
    cfg = with_ports(seed_repo, 3, "21000-21095")  # exactly 32 slots of 3
    procs = [
        subprocess.Popen(
            [*LANES, "claim", "w1", f"l{i}", "--agent", f"agent-{i}", "--json"],
            cwd=seed_repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(32)
    ]
    docs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        docs.append(json.loads(out))
    taken = [p for doc in docs for p in doc["ports"]]
    assert len(taken) == len(set(taken)) == 96  # no port twice among the live lanes
    assert set(taken) == set(range(21000, 21096))
    for doc in docs:
        assert doc["ports"] == [doc["port"], doc["port"] + 1, doc["port"] + 2]
        record = claims.read_record(Path(doc["claim_dir"]))
        assert record is not None and record.port == doc["port"]
    assert sorted(s.port for s in ports.live(cfg)) == sorted(d["port"] for d in docs)

    # the range is full: the next claim gets no-free-port, and nothing of it is left
    before = snapshot(worktree_root, skip=())
    rc, doc = claim(seed_repo, "one-more")
    assert (rc, doc["error"]) == (1, "no-free-port")
    assert "21000-21095" in doc["message"] and doc["hint"]
    assert not cfg.claim_dir("w1", "one-more").exists()
    assert snapshot(worktree_root, skip=()) == before
    refused = [e for e in claims.ledger(cfg, "w1").events() if e.lane == "one-more"]
    assert [(e.event, e.details["reason"]) for e in refused] == [("claim-refused", "no-free-port")]
    assert not list(cfg.wave_dir("w1").glob(".claiming-*"))


def test_a_slot_is_reused_after_release_and_reap(seed_repo: Path) -> None:
    cfg = with_ports(seed_repo, 2, "22000-22005")  # three slots
    assert [claim(seed_repo, lane)[1]["port"] for lane in "abc"] == [22000, 22002, 22004]
    assert claim(seed_repo, "d")[1]["error"] == "no-free-port"
    rc, doc = lanes_json(seed_repo, "claim", "w1", "a", "--agent", "late")
    assert (rc, doc["error"], doc["holder"]) == (3, "claimed", "agent-a")  # held: that wins

    assert run_lanes(seed_repo, "release", "w1", "b").returncode == 0
    assert claim(seed_repo, "d")[1]["port"] == 22002

    old = time.time() - 2 * cfg.stale_after_seconds  # a: no heartbeat for long
    go_stale(cfg, "w1", "a", int(old))
    rc, doc = lanes_json(seed_repo, "gc")
    assert rc == 0, doc
    assert claim(seed_repo, "e")[1]["port"] == 22000
    assert sorted((s.lane, s.port) for s in ports.live(cfg)) == [
        ("c", 22004),
        ("d", 22002),
        ("e", 22000),
    ]


def test_a_claim_released_and_claimed_again_gets_a_free_slot(seed_repo: Path) -> None:
    """A lane's own slot goes back on release; claimed again, the lane takes the lowest."""
    cfg = with_ports(seed_repo, 1, "22100-22101")
    assert claim(seed_repo, "a")[1]["port"] == 22100
    assert run_lanes(seed_repo, "release", "w1", "a").returncode == 0
    assert claim(seed_repo, "b")[1]["port"] == 22100
    assert claim(seed_repo, "a")[1]["port"] == 22101
    assert sorted((s.lane, s.port) for s in ports.live(cfg)) == [("a", 22101), ("b", 22100)]


def test_a_claimer_killed_after_taking_a_slot_never_keeps_it(seed_repo: Path) -> None:
    cfg = with_ports(seed_repo, 1, "22200-22200")  # one slot
    killed = run_lanes(
        seed_repo,
        "claim",
        "w1",
        "a",
        "--agent",
        "x",
        env={"LANES_FAILPOINT": "claim-port-taken"},
    )
    assert killed.returncode == -9
    assert [s.lane for s in ports._read(cfg)] == ["a"]  # taken, then the claimer died
    assert list(cfg.wave_dir("w1").glob(".claiming-*"))  # with its claim half-prepared
    # its claim can never be published: the slot is taken over
    assert claim(seed_repo, "b")[1]["port"] == 22200
    assert [s.lane for s in ports.live(cfg)] == ["b"]


def test_a_slot_whose_claim_is_gone_is_taken_over(seed_repo: Path) -> None:
    """A claim directory removed by hand (or a machine's crash): its slot is taken over
    once it is needed, and never while its claim is there."""
    cfg = with_ports(seed_repo, 1, "22300-22300")
    assert claim(seed_repo, "a")[1]["port"] == 22300
    assert claim(seed_repo, "b")[1]["error"] == "no-free-port"
    shutil.rmtree(cfg.claim_dir("w1", "a"))
    assert claim(seed_repo, "b")[1]["port"] == 22300


def test_an_unreadable_registry_is_rebuilt_from_the_claims(seed_repo: Path) -> None:
    cfg = with_ports(seed_repo, 2, "22400-22409")
    assert claim(seed_repo, "a")[1]["port"] == 22400
    (cfg.state_dir / ports.FOLDER / ports.SLOTS).write_text("{not json")
    assert claim(seed_repo, "b")[1]["port"] == 22402  # a's ports are still a's
    (cfg.state_dir / ports.FOLDER / ports.SLOTS).write_text(
        json.dumps({"slots": [{"wave": "../..", "lane": "x", "port": 1}]})
    )
    assert claim(seed_repo, "c")[1]["port"] == 22404


def test_free_gives_back_an_integrated_lanes_slot(seed_repo: Path) -> None:
    """What the lead calls after integration: the claim dir stays, its slot does not."""
    cfg = with_ports(seed_repo, 1, "22500-22509")
    claim(seed_repo, "a")
    assert ports.free(cfg, "w1", "a") == [22500]
    assert ports.live(cfg) == []
    assert ports.free(cfg, "w1", "a") == []


def test_no_ports_means_no_registry(seed_repo: Path) -> None:
    cfg = config.load(seed_repo)
    doc = claim(seed_repo, "a")[1]
    assert (doc["port"], doc["ports"]) == (None, [])
    assert "port" not in json.loads((cfg.claim_dir("w1", "a") / claims.RECORD).read_text())
    assert not (cfg.state_dir / ports.FOLDER).exists()


@pytest.mark.parametrize("bad", ["20000", 0, 70000, True, 1.5])
def test_a_record_with_a_bad_port_is_not_trusted(seed_repo: Path, bad: object) -> None:
    cfg = with_ports(seed_repo, 1, "22600-22609")
    claim(seed_repo, "a")
    path = cfg.claim_dir("w1", "a") / claims.RECORD
    raw = json.loads(path.read_text())
    assert raw["port"] == 22600
    path.write_text(json.dumps({**raw, "port": bad}))
    problems: list[str] = []
    assert claims.read_record(cfg.claim_dir("w1", "a"), problems) is None
    assert "port" in problems[0]


def test_integration_gives_back_the_lanes_slot(seed_repo: Path) -> None:
    cfg = with_ports(seed_repo, 1, "22700-22700")
    doc = claim(seed_repo, "a")[1]
    commit_file(Path(doc["worktree"]), "src/a.py", "a = 1\n")
    assert run_lanes(seed_repo, "submit", "w1", "a").returncode == 0
    assert [s.lane for s in ports.live(cfg)] == ["a"]
    rc, out = lanes_json(seed_repo, "integrate", "w1")
    assert rc == 0 and out["integrated"] == ["a"], out
    assert ports.live(cfg) == []  # the pass gave it back; its claim dir is still there
    assert claim(seed_repo, "b")[1]["port"] == 22700
