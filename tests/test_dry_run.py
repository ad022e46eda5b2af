"""The dry run: what a pass would do, predicted without changing anything."""

from __future__ import annotations

from pathlib import Path

from integrator import dry_run, integrate
from lanes import claims
from lanes.config import Config
from tests.conftest import git, lanes_json, origin_of, publish, run_lanes, snapshot, stage
from tests.test_integrate import (
    WAVE,
    deploy_frag,
    make_lane,
    manifest_frag,
    migration,
    step,
    version_frag,
)


def _mixed_wave(cfg: Config) -> None:
    files, entry = migration("m", 261)
    make_lane(cfg, "first", {"src/app.py": '"""v2"""\n'}, [version_frag("patch")])
    make_lane(cfg, "clash", {"src/app.py": '"""v3"""\n'}, [version_frag("major")])
    make_lane(cfg, "m", files, [manifest_frag(entry), version_frag("minor"), step("m-smoke")])
    make_lane(cfg, "liar", {}, [manifest_frag("999_nowhere.sql")])
    make_lane(
        cfg,
        "region",
        {},
        [deploy_frag({"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"})],
    )


def _refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(refname) %(objectname)") + git(
        repo, "worktree", "list", "--porcelain"
    )


def test_dry_run_prints_the_plan_and_changes_nothing(cfg: Config, seed_repo: Path) -> None:
    _mixed_wave(cfg)
    # On a remote, what any read brings here first (the objects of the claims and branches,
    # the fragments staged in the git dir, AGENT_LEDGER.md rendered: caches of the remote,
    # docs/remote.md): read once, so what follows compares everything, the remote's refs too.
    stage(cfg, WAVE)
    claims.ledger(cfg, WAVE).events()
    bare = origin_of(seed_repo)

    def everything() -> tuple[object, ...]:
        there = _refs(bare) if bare else ""
        return _refs(seed_repo), snapshot(seed_repo), snapshot(cfg.state_dir, skip=()), there

    before = everything()
    rc, doc = lanes_json(seed_repo, "integrate", WAVE, "--dry-run")
    assert rc == 0 and doc["dry_run"] is True and doc["schema_version"] == 1
    assert everything() == before
    lanes = {p["lane"]: p for p in doc["lanes"]}
    assert [p["lane"] for p in doc["lanes"]] == ["first", "clash", "m", "liar", "region"]
    assert (lanes["clash"]["outcome"], lanes["clash"]["reason"], lanes["clash"]["files"]) == (
        "bounce",
        "conflict",
        ["src/app.py"],
    )
    assert lanes["liar"]["reason"] == "missing-entry"
    assert lanes["m"]["outcome"] == "land" and lanes["m"]["entries"] == ["261_m.sql"]
    assert doc["land"] == "replay" and lanes["m"]["commits"] == lanes["m"]["own_commits"] == 1
    assert doc["manifest_added"] == ["261_m.sql"]
    assert doc["version_bump"] == "minor 0.3.5 -> 0.4.0"  # the bounced major does not count
    assert (
        "+      REGION: nrt" in doc["deploy_diff"]
        and "+      - name: m-smoke" in doc["deploy_diff"]
    )
    # human output: the same plan, and still nothing changed
    ledger_before = cfg.ledger_path(WAVE).read_bytes()
    proc = run_lanes(seed_repo, "integrate", WAVE, "--dry-run")
    assert proc.returncode == 0 and "clash" in proc.stdout and "nothing was changed" in proc.stderr
    assert cfg.ledger_path(WAVE).read_bytes() == ledger_before
    # and the prediction is what the pass then does
    result = integrate.integrate(cfg, WAVE)
    predicted = {p["lane"]: p["outcome"] for p in doc["lanes"]}
    assert result.integrated == [lane for lane, o in predicted.items() if o == "land"]
    assert [b.lane for b in result.bounced] == [
        lane for lane, o in predicted.items() if o == "bounce"
    ]
    assert result.version_bump == doc["version_bump"]


def test_dry_run_after_the_pass_has_nothing_to_do(cfg: Config) -> None:
    make_lane(cfg, "one", {"src/one.py": "1\n"})
    integrate.integrate(cfg, WAVE)
    report = dry_run.predict(cfg, WAVE)
    assert report.lanes == [] and report.version_bump is None and report.deploy_diff == ""
    assert claims.ledger(cfg, WAVE).verify().ok


def test_the_dry_run_lands_each_commit_as_the_pass_does(cfg: Config, seed_repo: Path) -> None:
    """A lane whose first commit conflicts with main and whose second puts the line back
    merges cleanly as a whole; the pass replays commit by commit and bounces it, and so
    does the dry run's prediction."""
    from tests.conftest import commit_file

    wt = make_lane(cfg, "fights", submit=False)
    commit_file(seed_repo, "src/app.py", '"""main\'s"""\n', "main: app")
    publish(seed_repo)  # on a remote, pushed: the pass lands on the remote's main
    original = (wt / "src" / "app.py").read_text()
    commit_file(wt, "src/app.py", '"""mine"""\n', "fights: app")
    commit_file(wt, "src/app.py", original, "fights: put it back")
    from lanes import submit

    submit.submit(cfg, WAVE, "fights")
    make_lane(cfg, "fine", {"src/fine.py": "1\n"})
    report = dry_run.predict(cfg, WAVE)
    outcomes = [(p.lane, p.outcome, p.reason, p.files) for p in report.lanes]
    assert outcomes == [
        ("fights", "bounce", "conflict", ["src/app.py"]),
        ("fine", "land", "", []),
    ]
    result = integrate.integrate(cfg, WAVE)
    assert [(b.lane, b.reason, b.files) for b in result.bounced] == [
        ("fights", "conflict", ["src/app.py"])
    ]
    assert result.integrated == ["fine"]
