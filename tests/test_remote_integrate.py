"""The integration pass and the gate on a remote (`remote = "origin"`), from a fresh clone.

Agents on two clones claim, commit, drop fragments and submit; the integrator runs in a
third clone that never saw their disks, as the CI that deploys does: it takes the lease,
follows the remote's main, fetches the lanes' branches and reads their fragments from
the claim refs, lands, and moves main with its record in one atomic push. The remote is
a `file://` bare repository here; tests/test_remote.py covers git daemon and smart HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from lanes import scaffold
from tests.conftest import LANES, commit_file, git, lanes_json, run_lanes

WAVE = "w"


@pytest.fixture
def bare(tmp_path: Path, seed_repo: Path) -> Path:
    """The seed with `remote = "origin"` committed on main, as a bare server repository."""
    py = seed_repo / "pyproject.toml"
    if 'remote = "origin"' not in py.read_text():  # else the seed has it committed already
        py.write_text(
            py.read_text().replace('stale_after = "30m"', 'stale_after = "30m"\nremote = "origin"')
        )
        git(seed_repo, "commit", "-qam", "coordinate through origin")
    path = tmp_path / "srv.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed_repo), str(path))
    return path


def clone(tmp_path: Path, bare: Path, name: str) -> Path:
    dest = tmp_path / name
    git(tmp_path, "clone", "-q", f"file://{bare}", str(dest))
    return dest


def on_server(bare: Path, ref: str) -> str:
    return git(bare, "rev-parse", ref)


def server_events(bare: Path) -> list[tuple[str, str]]:
    """(event, lane) of every commit of the server's ledger chain, oldest first."""
    out = git(bare, "log", "--reverse", "--format=%s", f"refs/lanes/{WAVE}/ledger")
    found = []
    for subject in out.splitlines():
        event = subject.split(" ", 4)[4]  # lanes ledger <wave> #<n> <event>
        found.append(event)
    rows = git(bare, "log", "--reverse", "--format=%b", f"refs/lanes/{WAVE}/ledger")
    lanes = [
        line.split(" | ")[4] if line.startswith("| ") else ""
        for line in rows.splitlines()
        if line.startswith("| ")
    ]
    return list(zip(found, lanes, strict=True))


def agent_lane(machine: Path, lane: str, migration: str, bump: str) -> str:
    code, claimed = lanes_json(machine, "claim", WAVE, lane, "--agent", f"agent-{lane}")
    assert code == 0, claimed
    wt = Path(claimed["worktree"])
    commit_file(wt, f"scripts/migrations/{migration}", "-- new\n")
    commit_file(wt, f"src/{lane}.py", f"{lane} = 1\n")
    assert lanes_json(wt, "fragment", "manifest", migration)[0] == 0
    assert lanes_json(wt, "fragment", "version", bump)[0] == 0
    code, sub = lanes_json(wt, "submit")
    assert code == 0, sub
    return str(sub["head"])


@pytest.fixture
def submitted(tmp_path: Path, bare: Path) -> dict[str, Path]:
    """Two lanes submitted from two machines; a third clone, made before any of it, for the
    integrator."""
    m0, m1, ci = (clone(tmp_path, bare, n) for n in ("m0", "m1", "ci"))
    agent_lane(m0, "a", "200_a.sql", "patch")
    agent_lane(m1, "b", "201_b.sql", "minor")
    return {"m0": m0, "m1": m1, "ci": ci}


def test_a_fresh_clone_integrates_and_gates_the_wave_with_no_shared_disk(
    tmp_path: Path, bare: Path, submitted: dict[str, Path]
) -> None:
    ci = submitted["ci"]
    assert not (ci / "tools/offline/_inbox" / WAVE).exists()  # nothing of the wave here
    code, result = lanes_json(ci, "integrate", WAVE)
    assert code == 0, result
    assert result["integrated"] == ["a", "b"] and result["bounced"] == []
    head = on_server(bare, "refs/heads/main")
    assert result["head"] == head and git(ci, "rev-parse", "main") == head
    assert scaffold.VERSION == "0.3.5" and result["version"] == "0.4.0"
    manifest = git(bare, "show", f"{head}:{scaffold.MANIFEST}")
    assert "200_a.sql" in manifest and "201_b.sql" in manifest
    events = server_events(bare)
    assert events.count(("integrated", "a")) == 1 and events.count(("integrated", "b")) == 1
    assert events[-1][0] == "integrate-done"
    # the claims are marked integrated, on the server, in the same push as main
    for lane in ("a", "b"):
        mark = git(bare, "log", "-1", "--format=%s", f"refs/lanes/{WAVE}/claims/{lane}")
        assert mark.startswith(f"lanes integrated {lane} into {head}")
    # the gate, the wave checks included, passes in the integrator's clone and in a clone
    # made afterwards, which holds nothing but what the remote has
    for where in (ci, clone(tmp_path, bare, "later")):
        code, gate = lanes_json(where, "verify", WAVE)
        assert code == 0, gate
        assert gate["ok"] and all(c["ok"] for c in gate["checks"])
    # every machine sees the lanes integrated, and the chain is whole
    code, status = lanes_json(submitted["m0"], "status", WAVE)
    assert {ln["lane"]: ln["state"] for ln in status["lanes"]} == {
        "a": "integrated",
        "b": "integrated",
    }
    assert lanes_json(submitted["m1"], "ledger", "verify", WAVE)[0] == 0


def test_two_integrators_on_two_clones_one_runs_the_other_exits_3(
    tmp_path: Path, bare: Path, submitted: dict[str, Path]
) -> None:
    gate = tmp_path / "go"
    first = subprocess.Popen(
        [*LANES, "integrate", WAVE, "--json"],
        cwd=submitted["ci"],
        env={**os.environ, "LANES_FAILPOINT": f"locked:wait:{gate}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(gate.with_name("go.reached"))
    code, second = lanes_json(submitted["m1"], "integrate", WAVE)
    assert code == 3 and second["error"] == "integrator-running", second
    gate.touch()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["integrated"] == ["a", "b"]


def test_main_moved_on_the_remote_during_the_pass_changes_nothing_there(
    tmp_path: Path, bare: Path, submitted: dict[str, Path]
) -> None:
    gate = tmp_path / "go"
    first = subprocess.Popen(
        [*LANES, "integrate", WAVE, "--json"],
        cwd=submitted["ci"],
        env={**os.environ, "LANES_FAILPOINT": f"started:wait:{gate}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(gate.with_name("go.reached"))
    rival = submitted["m1"]
    git(rival, "checkout", "-q", "main")
    commit_file(rival, "docs/rival.md", "pushed by hand\n")
    git(rival, "push", "-q", "origin", "main")
    moved_to = on_server(bare, "refs/heads/main")
    before = on_server(bare, f"refs/lanes/{WAVE}/claims/a")
    gate.touch()
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 3 and json.loads(out)["error"] == "main-moved"
    assert on_server(bare, "refs/heads/main") == moved_to
    assert on_server(bare, f"refs/lanes/{WAVE}/claims/a") == before
    assert ("integrated", "a") not in server_events(bare)
    code, again = lanes_json(submitted["ci"], "integrate", WAVE)  # starts from the new main
    assert code == 0 and again["integrated"] == ["a", "b"], again
    assert git(bare, "merge-base", "--is-ancestor", moved_to, "refs/heads/main") == ""


def test_killed_after_the_remote_push_the_next_pass_only_follows(
    bare: Path, submitted: dict[str, Path]
) -> None:
    ci = submitted["ci"]
    old = git(ci, "rev-parse", "main")
    killed = run_lanes(ci, "integrate", WAVE, "--json", env={"LANES_FAILPOINT": "remote-landed"})
    assert killed.returncode == -9
    landed = on_server(bare, "refs/heads/main")
    assert landed != old and git(ci, "rev-parse", "main") == old  # the remote has it all
    assert [e for e in server_events(bare) if e[0] == "integrated"] == [
        ("integrated", "a"),
        ("integrated", "b"),
    ]
    code, again = lanes_json(ci, "integrate", WAVE)
    assert code == 0 and again["integrated"] == [], again
    assert git(ci, "rev-parse", "main") == landed == on_server(bare, "refs/heads/main")
    assert [e for e in server_events(bare) if e[0] == "integrated"] == [
        ("integrated", "a"),
        ("integrated", "b"),
    ]
    assert lanes_json(ci, "ledger", "verify", WAVE)[0] == 0


def test_a_main_here_ahead_of_the_remote_is_refused_and_nothing_moves(
    bare: Path, submitted: dict[str, Path]
) -> None:
    ci = submitted["ci"]
    commit_file(ci, "docs/local-only.md", "never pushed\n")
    refs = git(bare, "for-each-ref")
    code, doc = lanes_json(ci, "integrate", WAVE)
    assert code == 4 and doc["error"] == "main-diverged", doc
    assert "git push origin main" in doc["hint"]
    assert git(bare, "for-each-ref") == refs  # the lease taken and given back


def test_the_dry_run_plans_against_the_remote_and_changes_nothing(
    bare: Path, submitted: dict[str, Path]
) -> None:
    ci = submitted["ci"]
    refs, here = git(bare, "for-each-ref"), git(ci, "rev-parse", "main")
    code, dry = lanes_json(ci, "integrate", WAVE, "--dry-run")
    assert code == 0, dry
    assert [(p["lane"], p["outcome"]) for p in dry["lanes"]] == [("a", "land"), ("b", "land")]
    assert sorted(dry["manifest_added"]) == ["200_a.sql", "201_b.sql"]
    assert git(bare, "for-each-ref") == refs and git(ci, "rev-parse", "main") == here


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_long_pass_keeps_its_lease_and_one_taken_over_cannot_land(
    tmp_path: Path, bare: Path, submitted: dict[str, Path]
) -> None:
    """stale_after = 3s and a test run of 5 s: the lease is renewed (a second pass is told
    exit 3, not let in); a lease taken over by force meanwhile makes the landing change
    nothing."""
    ci = submitted["ci"]
    py = ci / "pyproject.toml"
    py.write_text(
        py.read_text()
        .replace('stale_after = "30m"', 'stale_after = "3s"')
        .replace('test_command = ""', 'test_command = "sleep 5"')
    )
    main_before = on_server(bare, "refs/heads/main")
    first = subprocess.Popen(
        [*LANES, "integrate", WAVE, "--json"],
        cwd=ci,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_ref(bare, f"refs/lanes/{WAVE}/integrator")
    time.sleep(4)  # older than stale_after, had it not been renewed
    other = submitted["m1"]
    py1 = other / "pyproject.toml"
    py1.write_text(py1.read_text().replace('stale_after = "30m"', 'stale_after = "3s"'))
    code, second = lanes_json(other, "integrate", WAVE)
    assert code == 3 and second["error"] == "integrator-running", second
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["integrated"] == ["a", "b"]
    assert on_server(bare, "refs/heads/main") != main_before

    # Taken over by force while a pass runs: that pass lands nothing.
    agent_lane(submitted["m0"], "c", "202_c.sql", "patch")
    main_before = on_server(bare, "refs/heads/main")
    first = subprocess.Popen(
        [*LANES, "integrate", WAVE, "--json"],
        cwd=ci,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_ref(bare, f"refs/lanes/{WAVE}/integrator")
    rival = git(bare, "commit-tree", git(bare, "hash-object", "-t", "tree", "/dev/null"), "-m", "x")
    git(bare, "update-ref", f"refs/lanes/{WAVE}/integrator", rival)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 3 and json.loads(out)["error"] == "integrator-running", out
    assert on_server(bare, "refs/heads/main") == main_before
    assert on_server(bare, f"refs/lanes/{WAVE}/integrator") == rival


def wait_for_ref(bare: Path, ref: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while subprocess.run(
        ["git", "rev-parse", "-q", "--verify", ref], cwd=bare, capture_output=True
    ).returncode:
        assert time.monotonic() < deadline, f"{ref} never appeared"
        time.sleep(0.02)


def test_a_server_that_will_not_move_main_is_remote_failed_and_nothing_moves(
    bare: Path, submitted: dict[str, Path]
) -> None:
    """A stale main.lock on the server: every ref of the atomic push is refused; that is the
    server's answer (exit 1 naming it), not a lost lease and not a moved main."""
    lock = bare / "refs" / "heads" / "main.lock"
    lock.write_text(on_server(bare, "refs/heads/main") + "\n")
    before = git(bare, "for-each-ref")
    code, doc = lanes_json(submitted["ci"], "integrate", WAVE)
    assert code == 1 and doc["error"] == "remote-failed", doc
    after = git(bare, "for-each-ref")
    kept = [ln for ln in before.splitlines() if "refs/heads/" in ln or "/claims/" in ln]
    assert kept == [ln for ln in after.splitlines() if "refs/heads/" in ln or "/claims/" in ln]
    assert ("integrated", "a") not in server_events(bare)
    lock.unlink()
    code, doc = lanes_json(submitted["ci"], "integrate", WAVE)
    assert code == 0 and doc["integrated"] == ["a", "b"], doc


def test_a_forged_submit_row_does_not_land_an_unsubmitted_lane(
    tmp_path: Path, bare: Path, submitted: dict[str, Path]
) -> None:
    """Anyone who can push refs/lanes/* can append a `submit` row with lanes' own code and
    push a branch for a lane whose holder never submitted it: the claim on the remote does
    not carry that submission, so the pass bounces the lane and lands nothing of it."""
    m0 = submitted["m0"]
    code, claimed = lanes_json(m0, "claim", WAVE, "victim", "--agent", "honest")
    assert code == 0, claimed
    evil = clone(tmp_path, bare, "evil")
    git(evil, "checkout", "-q", "-b", "forged", "origin/main")
    commit_file(evil, "src/evil.py", "evil = True\n")
    forged = git(evil, "rev-parse", "HEAD")
    git(evil, "push", "-q", "origin", f"{forged}:refs/heads/lanes/{WAVE}/victim")
    from lanes import config, coord

    coord.for_config(config.load(evil)).ledger(WAVE).append(
        "submit", "victim", "honest", head=forged, commits=1, fragments=0
    )
    code, result = lanes_json(submitted["ci"], "integrate", WAVE)
    assert code == 4, result
    assert result["integrated"] == ["a", "b"]
    [bounce] = result["bounced"]
    assert (bounce["lane"], bounce["reason"]) == ("victim", "not-submitted"), bounce
    head = on_server(bare, "refs/heads/main")
    assert "src/evil.py" not in git(bare, "ls-tree", "-r", "--name-only", head)


def test_a_lease_dated_in_the_future_is_taken_over(bare: Path, submitted: dict[str, Path]) -> None:
    tree = git(bare, "hash-object", "-t", "tree", "/dev/null")
    squat = subprocess.run(
        ["git", "commit-tree", tree, "-m", "lanes integrator w: squatter"],
        cwd=bare,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GIT_COMMITTER_DATE": "2099-01-01T00:00:00Z"},
    ).stdout.strip()
    git(bare, "update-ref", f"refs/lanes/{WAVE}/integrator", squat)
    code, doc = lanes_json(submitted["ci"], "integrate", WAVE)
    assert code == 0 and doc["integrated"] == ["a", "b"], doc
