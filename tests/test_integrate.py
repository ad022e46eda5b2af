"""The integration pass on real repositories shaped like the seed, through the core and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from integrator import integrate, trailers
from lanes import claims, config, fragments, scaffold, state
from lanes import submit as submit_mod
from lanes.config import Config
from lanes.coord import local as coord_local
from lanes.errors import BadInput, Refused
from lanes.surfaces import manifest as manifest_surface
from lanes.surfaces import version as version_surface
from lanes.surfaces.deploy import DeployFragment, PatchOp
from tests.conftest import (
    LANDING_POINTS,
    commit_file,
    git,
    hand_submit,
    lanes_json,
    publish,
    run_lanes,
    snapshot,
)

WAVE = "44"


# -- helpers shared with test_plan.py and test_integrate_crash.py --------------------------


def manifest_frag(*entries: str) -> fragments.ManifestFragment:
    return manifest_surface.fragment(list(entries))


def version_frag(bump: str) -> fragments.VersionFragment:
    return version_surface.fragment(bump)


def deploy_frag(*ops: dict[str, Any]) -> DeployFragment:
    return DeployFragment(patch=[PatchOp.model_validate(op) for op in ops])


def step(name: str) -> DeployFragment:
    """A deploy patch that appends a step: not idempotent, so a double application shows."""
    return deploy_frag(
        {"op": "add", "path": "/jobs/deploy/steps/-", "value": {"name": name, "run": "true"}}
    )


def make_lane(
    cfg: Config,
    lane: str,
    files: dict[str, str] | None = None,
    frags: list[Any] | None = None,
    *,
    wave: str = WAVE,
    submit: bool = True,
    message: str = "",
) -> Path:
    """Claim a lane, commit its files (one commit), drop its fragments, submit it."""
    worktree = Path(claims.claim(cfg, wave, lane, f"agent-{lane}").worktree)
    if files:
        for rel, text in files.items():
            (worktree / rel).parent.mkdir(parents=True, exist_ok=True)
            (worktree / rel).write_text(text, encoding="utf-8")
        git(worktree, "add", "--all")
        git(worktree, "commit", "-q", "-m", message or f"{lane}: work")
    for frag in frags or []:
        fragments.drop(cfg, wave, lane, frag)
    if submit:
        submit_mod.submit(cfg, wave, lane)
    return worktree


def migration(lane: str, number: int) -> tuple[dict[str, str], str]:
    name = f"{number}_{lane.replace('-', '_')}.sql"
    return {f"scripts/migrations/{name}": f"-- {lane}\nSELECT 1;\n"}, name


def landed_lanes(repo: Path, wave: str = WAVE, head: str = "") -> list[str]:
    """Lanes main (or `head`) says are integrated, oldest first (with repeats, if any)."""
    head = head or git(repo, "rev-parse", "main")
    return [ld.lane for ld in reversed(trailers.landed(repo, head, wave)) if ld.lane]


def bumps_on_main(repo: Path, wave: str = WAVE) -> list[str]:
    head = git(repo, "rev-parse", "main")
    return [ld.version_bump for ld in trailers.landed(repo, head, wave) if ld.version_bump]


def show(repo: Path, path: str, rev: str = "main") -> str:
    return git(repo, "show", f"{rev}:{path}") + "\n"


def events(cfg: Config, kind: str, wave: str = WAVE) -> list[Any]:
    return [ev for ev in claims.ledger(cfg, wave).events() if ev.event == kind]


def scratch_worktrees(cfg: Config) -> list[str]:
    listing = git(cfg.main_checkout, "worktree", "list", "--porcelain")
    root = str((cfg.state_dir / integrate.SCRATCH).resolve())
    return [ln for ln in listing.splitlines() if ln.startswith("worktree ") and root in ln]


def set_test_command(repo: Path, command: str) -> Config:
    """The operator sets test_command on main (a commit by hand, not through a lane)."""
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    text = text.replace('test_command = ""', f"test_command = {json.dumps(command)}")
    commit_file(repo, "pyproject.toml", text, "ci: set the integrator's test command")
    publish(repo)  # on a remote, pushed: the pass lands on the remote's main
    return config.load(repo)


def version_at(repo: Path, rev: str) -> dict[str, str]:
    """The version each version file carries at `rev`, read here, not by lanes' reader."""
    pyproject = tomllib.loads(git(repo, "show", f"{rev}:pyproject.toml"))
    server = json.loads(git(repo, "show", f"{rev}:server.json"))
    return {"pyproject.toml": pyproject["project"]["version"], "server.json": server["version"]}


CONTENDED = {
    scaffold.MANIFEST,
    "pyproject.toml",
    "server.json",
    ".github/workflows/deploy.yml",
    "lanes.toml",
}


def assert_main_is_clean(repo: Path, base: str) -> list[str]:
    """Every commit on main since `base` has agreeing version files, and none but the
    integrator's own (a Lanes-Version-Bump or a lane's trailer commit) touches a contended
    file. Returns the commits, oldest first."""
    commits = git(repo, "rev-list", "--reverse", f"{base}..main").split()
    assert git(repo, "rev-list", "--merges", f"{base}..main") == ""
    for sha in commits:
        versions = version_at(repo, sha)
        assert len(set(versions.values())) == 1, (sha, versions)
        touched = set(git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", sha).split())
        keys = trailers.parse_trailers(git(repo, "log", "-1", "--format=%B", sha))
        ours = trailers.VERSION_BUMP in keys or trailers.LANE in keys
        if not ours:
            assert not touched & CONTENDED, (sha, touched & CONTENDED)
        elif trailers.LANE in keys:
            assert not touched & {"pyproject.toml", "server.json"}, sha  # fragments only
    return commits


def run_restore(worktree: Path, commands: list[str]) -> None:
    """Run a refusal's recovery as the agent would: the commands, joined, in a shell."""
    proc = subprocess.run(
        ["bash", "-c", " && ".join(commands)], cwd=worktree, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


# -- lanes that land -----------------------------------------------------------------------


def test_lanes_land_in_submission_order_exactly_as_asked(cfg: Config, seed_repo: Path) -> None:
    repo = seed_repo
    old = git(repo, "rev-parse", "main")
    files_c, entry_c = migration("c", 262)
    files_a, entry_a = migration("a", 261)
    # Claimed a, b, c; submitted c, a, b: submission order decides.
    wt_a = make_lane(
        cfg, "a", files_a, [manifest_frag(entry_a), version_frag("patch")], submit=False
    )
    wt_b = make_lane(cfg, "b", {"src/b.py": "B = 1\n"}, [step("b-smoke")], submit=False)
    make_lane(
        cfg,
        "c",
        files_c,
        [
            manifest_frag(entry_c),
            version_frag("minor"),
            deploy_frag({"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"}),
        ],
    )
    submit_mod.submit(cfg, WAVE, "a")
    submit_mod.submit(cfg, WAVE, "b")

    result = integrate.integrate(cfg, WAVE)

    assert result.integrated == ["c", "a", "b"] and result.bounced == []
    assert landed_lanes(repo) == ["c", "a", "b"]
    # main is linear and ends with: c's work, c's marker, a..., b..., the one version bump
    assert git(repo, "rev-list", "--merges", "main") == ""
    subjects = git(repo, "log", "--format=%s", f"{old}..main").splitlines()
    assert subjects == [
        "lanes: version 0.3.5 -> 0.4.0 (wave 44, minor)",
        "lanes: land 44/b",
        "b: work",
        "lanes: land 44/a",
        "a: work",
        "lanes: land 44/c",
        "c: work",
    ]
    assert result.head == git(repo, "rev-parse", "main")
    assert result.version == "0.4.0" and bumps_on_main(repo) == ["minor 0.3.5 -> 0.4.0"]
    assert 'version = "0.4.0"  # keep in step' in show(repo, "pyproject.toml")
    assert json.loads(show(repo, "server.json"))["version"] == "0.4.0"
    # the manifest: comments kept, each entry once, in migration order
    text = show(repo, scaffold.MANIFEST)
    assert text.startswith(scaffold.MANIFEST_TEXT.splitlines()[0])
    assert manifest_surface.entries(text) == [*scaffold.REQUIRED, entry_a, entry_c]
    deploy_text = show(repo, ".github/workflows/deploy.yml")
    assert "      REGION: nrt\n" in deploy_text and "- name: b-smoke\n" in deploy_text
    assert "  group: deploy   # never two deploys at once\n" in deploy_text
    # the marker commit names wave, lane and fragments
    marker = trailers.landed(repo, result.head, WAVE)[1]
    assert marker.lane == "b" and marker.fragments == [
        p.name for p in (cfg.claim_dir(WAVE, "b") / "fragments.applied").iterdir()
    ]
    # ledger: start, three integrated (with commits, head, fragments), done
    kinds = [ev.event for ev in claims.ledger(cfg, WAVE).events()]
    assert kinds[-5:] == [
        "integrate-start",
        "integrated",
        "integrated",
        "integrated",
        "integrate-done",
    ]
    done = events(cfg, "integrate-done")[-1].details
    assert done["integrated"] == ["c", "a", "b"] and done["bounced"] == []
    assert done["head"] == result.head and done["version"] == "0.4.0"
    first = events(cfg, "integrated")[0]
    assert first.lane == "c" and first.details["head"] == result.head
    assert len(first.details["commits"]) == 2 and len(first.details["fragments"]) == 3
    assert {h.state for h in state.histories(cfg, WAVE).values()} == {"integrated"}
    # fragments archived, none lost; no scratch worktree; the user's checkout moved along
    for lane in ("a", "b", "c"):
        assert list((cfg.claim_dir(WAVE, lane) / "fragments").iterdir()) == []
    assert scratch_worktrees(cfg) == []
    assert git(repo, "status", "--porcelain") == ""
    assert (repo / "src" / "b.py").read_text() == "B = 1\n" and result.checkout == "updated"
    del wt_a, wt_b


def test_cli_json_and_human_output(cfg: Config, seed_repo: Path) -> None:
    make_lane(cfg, "one", {"src/one.py": "1\n"}, [version_frag("patch")])
    proc = run_lanes(seed_repo, "integrate", WAVE)
    assert proc.returncode == 0, proc.stderr
    assert "one" in proc.stdout and "integrated" in proc.stdout
    assert "version: patch 0.3.5 -> 0.3.6" in proc.stderr
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["schema_version"] == 1
    assert doc["integrated"] == [] and doc["bounced"] == [] and doc["version"] == "0.3.6"
    assert doc["head"] == git(seed_repo, "rev-parse", "main")


# -- lanes that bounce ---------------------------------------------------------------------


def test_conflicting_lane_bounces_with_its_files_and_the_pass_goes_on(
    cfg: Config, seed_repo: Path
) -> None:
    make_lane(cfg, "first", {"src/app.py": '"""The API, v2."""\n'})
    wt = make_lane(
        cfg, "second", {"src/app.py": '"""The API, rewritten."""\n'}, [version_frag("major")]
    )
    make_lane(cfg, "third", {"src/third.py": "3\n"}, [version_frag("patch")])
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4
    assert doc["integrated"] == ["first", "third"]
    assert [(b["lane"], b["reason"], b["files"]) for b in doc["bounced"]] == [
        ("second", "conflict", ["src/app.py"])
    ]
    assert doc["version"] == "0.3.6"  # the bounced lane's major bump did not count
    bounced = events(cfg, "bounced")
    assert [(e.lane, e.details["reason"], e.details["files"]) for e in bounced] == [
        ("second", "conflict", ["src/app.py"])
    ]
    assert state.lane_state(cfg, WAVE, "second") == "bounced"
    assert len(list((cfg.claim_dir(WAVE, "second") / "fragments").iterdir())) == 1  # kept
    # The agent rebases onto main, resolves, resubmits: the next pass lands it.
    subprocess.run(["git", "rebase", "main"], cwd=wt, capture_output=True)
    (wt / "src" / "app.py").write_text('"""The API, v2, rewritten."""\n')
    git(wt, "add", "src/app.py")
    subprocess.run(["git", "-c", "core.editor=true", "rebase", "--continue"], cwd=wt, check=True)
    row = next(r for r in state.status(cfg, WAVE) if r.lane == "second")
    assert (row.state, row.bounce_reason, row.commits_ahead) == ("bounced", "conflict", 1)
    submit_mod.submit(cfg, WAVE, "second")
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["second"] and doc["version"] == "1.0.0"
    assert show(seed_repo, "src/app.py") == '"""The API, v2, rewritten."""\n'
    assert landed_lanes(seed_repo) == ["first", "third", "second"]


def test_patches_to_the_same_path_conflict_and_the_later_bounces(cfg: Config) -> None:
    region = "/jobs/deploy/env/REGION"
    make_lane(
        cfg,
        "p1",
        {"src/p1.py": "1\n"},
        [deploy_frag({"op": "add", "path": region, "value": "nrt"})],
    )
    make_lane(
        cfg,
        "p2",
        {"src/p2.py": "2\n"},
        [deploy_frag({"op": "add", "path": region, "value": "hnd"})],
    )
    make_lane(cfg, "p3", {}, [deploy_frag({"op": "add", "path": region, "value": "nrt"})])  # same
    make_lane(
        cfg,
        "p4",
        {},
        [step("p4"), deploy_frag({"op": "replace", "path": "/jobs/deploy/env", "value": {}})],
    )
    make_lane(cfg, "p5", {}, [step("p5")])
    make_lane(cfg, "p5-again", {}, [step("p5")])  # the very same step: it lands once
    make_lane(cfg, "p5-other", {}, [step("p5-other")])  # two appends to one list both land
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["p1", "p3", "p5", "p5-again", "p5-other"]
    assert [(b.lane, b.reason, b.files) for b in result.bounced] == [
        ("p2", "deploy-conflict", [".github/workflows/deploy.yml"]),
        ("p4", "deploy-conflict", [".github/workflows/deploy.yml"]),
    ]
    assert "lane p1" in result.bounced[0].message
    text = show(cfg.main_checkout, ".github/workflows/deploy.yml")
    assert text.count("REGION: nrt") == 1 and "hnd" not in text and "- name: p4" not in text
    assert text.count("- name: p5\n") == 1 and "- name: p5-other" in text
    # A later wave's lane, written on top of p1's change, may change it again.
    wt = make_lane(
        cfg,
        "p6",
        {},
        [deploy_frag({"op": "replace", "path": region, "value": "kix"})],
        submit=False,
    )
    assert git(wt, "merge-base", "--is-ancestor", result.head, "HEAD") == ""
    submit_mod.submit(cfg, WAVE, "p6")
    assert integrate.integrate(cfg, WAVE).integrated == ["p6"]
    assert "REGION: kix" in show(cfg.main_checkout, ".github/workflows/deploy.yml")


def test_an_insert_into_a_list_conflicts_with_a_later_lane_naming_an_element_by_index(
    cfg: Config,
) -> None:
    # s1 inserts a step before the others; s2, written against main as it was, means the
    # Deploy step by /steps/2. Applied after s1, that index names "Verify boot manifest".
    make_lane(
        cfg,
        "s1",
        {},
        [deploy_frag({"op": "add", "path": "/jobs/deploy/steps/0", "value": {"run": "setup"}})],
    )
    make_lane(
        cfg,
        "s2",
        {},
        [deploy_frag({"op": "replace", "path": "/jobs/deploy/steps/2/run", "value": "fly x"})],
    )
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["s1"]
    assert [(b.lane, b.reason) for b in result.bounced] == [("s2", "deploy-conflict")]
    text = show(cfg.main_checkout, ".github/workflows/deploy.yml")
    assert "run: python scripts/ops/pre_deploy_manifest_verify.py" in text
    assert "fly x" not in text


def test_fragments_that_lie_bounce(cfg: Config, seed_repo: Path) -> None:
    files, entry = migration("adds", 261)
    make_lane(cfg, "liar", {"src/liar.py": "x\n"}, [manifest_frag("999_nowhere.sql")])
    make_lane(cfg, "early", {}, [manifest_frag("262_later.sql")])  # its file comes later
    make_lane(cfg, "adds", files, [manifest_frag(entry)])  # names the file it adds: fine
    make_lane(
        cfg, "later", {"scripts/migrations/262_later.sql": "x\n"}, [manifest_frag("262_later.sql")]
    )
    make_lane(cfg, "patcher", {}, [deploy_frag({"op": "remove", "path": "/jobs/nope"})])
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["adds", "later"]
    reasons = {b.lane: (b.reason, b.files) for b in result.bounced}
    liar = next(b for b in result.bounced if b.lane == "liar")
    assert "-manifest-" in liar.message and "lanes fragment withdraw" in liar.message
    assert reasons == {
        "liar": ("missing-entry", ["scripts/migrations/999_nowhere.sql"]),
        "early": ("missing-entry", ["scripts/migrations/262_later.sql"]),
        "patcher": ("bad-fragment", [reasons["patcher"][1][0]]),
    }
    assert reasons["patcher"][1][0].endswith(
        "-deploy-" + reasons["patcher"][1][0].split("-deploy-")[1]
    )
    entries = manifest_surface.entries(show(seed_repo, scaffold.MANIFEST))
    assert "999_nowhere.sql" not in entries and Counter(entries)["262_later.sql"] == 1
    assert git(seed_repo, "ls-tree", "main", "src/liar.py") == ""  # no half-applied lane
    # The bounced patcher takes its bad fragment back, resubmits, and lands.
    fragments.withdraw(cfg, WAVE, "patcher", [Path(reasons["patcher"][1][0]).name])
    submit_mod.submit(cfg, WAVE, "patcher")
    assert integrate.integrate(cfg, WAVE).integrated == ["patcher"]


def test_a_fragment_is_data_never_code(cfg: Config, tmp_path: Path) -> None:
    """A fragment file written by hand with shell in it is refused, never run."""
    pwned = tmp_path / "pwned"
    make_lane(cfg, "shell", {"src/s.py": "s\n"}, submit=False)
    evil = json.dumps({"kind": "manifest", "entries": [f"x.sql; touch {pwned}"]}).encode()
    hand_submit(cfg, WAVE, "shell", {"00000000000000000001-manifest-evil00.json": evil})
    result = integrate.integrate(cfg, WAVE)
    assert [(b.lane, b.reason) for b in result.bounced] == [("shell", "bad-fragment")]
    assert not pwned.exists()


def test_failing_test_command_bounces_and_tests_run_in_a_scratch_tree(
    seed_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "test-runs.log"
    monkeypatch.setenv("TEST_LOG", str(log))
    cfg = set_test_command(
        seed_repo, 'pwd >> "$TEST_LOG"; echo "checking $LANES_LANE"; test ! -e src/broken.py'
    )
    make_lane(cfg, "good", {"src/good.py": "ok\n"}, [version_frag("minor")])
    make_lane(cfg, "bad", {"src/broken.py": "boom\n"}, [version_frag("major")])
    make_lane(cfg, "after", {"src/after.py": "ok\n"})
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["good", "after"] and result.version == "0.4.0"
    (bounce,) = result.bounced
    assert (bounce.lane, bounce.reason) == ("bad", "test-failed")
    assert "exited 1" in bounce.message and "checking bad" in bounce.message
    ran_in = {Path(p) for p in log.read_text().split()}
    assert len(ran_in) >= 1 and seed_repo not in ran_in
    assert all(cfg.state_dir / integrate.SCRATCH in p.parents for p in ran_in)
    assert not (seed_repo / "src" / "broken.py").exists()
    assert git(seed_repo, "ls-tree", "main", "src/broken.py") == ""


def test_a_branch_that_edits_a_contended_file_or_lanes_toml_bounces(cfg: Config) -> None:
    # submit refuses the first; a submit recorded by an older lanes, or by hand, gets here
    wt = make_lane(cfg, "sneaky", submit=False)
    commit_file(wt, scaffold.MANIFEST, "# emptied\n", "sneaky: clear the manifest")
    head = git(wt, "rev-parse", "HEAD")
    claims.ledger(cfg, WAVE).append("submit", "sneaky", "agent-sneaky", head=head)
    wt = make_lane(cfg, "rules", {"lanes.toml": 'test_command = "true"\n'}, submit=False)
    with pytest.raises(Refused):
        submit_mod.submit(cfg, WAVE, "rules")
    head = git(wt, "rev-parse", "HEAD")
    claims.ledger(cfg, WAVE).append("submit", "rules", "agent-rules", head=head)
    make_lane(cfg, "fine", {"src/fine.py": "1\n"})
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["fine"]
    assert [(b.lane, b.reason, b.files) for b in result.bounced] == [
        ("sneaky", "touches-contended-surface", [scaffold.MANIFEST]),
        ("rules", "touches-contended-surface", ["lanes.toml"]),
    ]


def test_an_edit_put_back_by_a_later_commit_bounces_and_lands_once_rewritten(
    cfg: Config, seed_repo: Path
) -> None:
    """Submitted anyway (by hand, an older lanes, or through a core that skipped the guard):
    the pass judges every commit it would land, and bounces the lane naming both."""
    base = git(seed_repo, "rev-parse", "main")
    wt = make_lane(cfg, "sly", {"src/sly.py": "s = 1\n"}, [version_frag("patch")], submit=False)
    text = (wt / "server.json").read_text()
    edited = commit_file(wt, "server.json", text.replace('"0.3.5"', '"9.9.9"'), "sly: bump")
    back = commit_file(wt, "server.json", text, "sly: put it back")
    claims.ledger(cfg, WAVE).append("submit", "sly", "agent-sly", head=back)
    make_lane(cfg, "fine", {"src/fine.py": "f = 1\n"})

    rc, plan_doc = lanes_json(seed_repo, "integrate", WAVE, "--dry-run")
    predicted = {p["lane"]: p for p in plan_doc["lanes"]}
    assert predicted["sly"]["outcome"] == "bounce"
    assert predicted["sly"]["reason"] == "touches-contended-surface"
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 4 and doc["integrated"] == ["fine"]
    [bounce] = doc["bounced"]
    assert (bounce["lane"], bounce["reason"], bounce["files"]) == (
        "sly",
        "touches-contended-surface",
        ["server.json"],
    )
    assert edited[:12] in bounce["message"] and back[:12] in bounce["message"]
    assert git(seed_repo, "log", "--format=%s", f"{base}..main", "--", "server.json") == ""
    assert_main_is_clean(seed_repo, base)
    # The agent asks submit what to do, rewrites its branch as told, and lands.
    git(wt, "rebase", "-q", "main")
    with pytest.raises(Refused) as refusal:
        submit_mod.submit(cfg, WAVE, "sly")
    run_restore(wt, refusal.value.extra["restore"])
    submit_mod.submit(cfg, WAVE, "sly")
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["sly"] and result.bounced == []
    assert landed_lanes(seed_repo) == ["fine", "sly"] and result.version == "0.3.6"
    assert git(seed_repo, "log", "--format=%s", f"{base}..main", "--", "server.json") == (
        "lanes: version 0.3.5 -> 0.3.6 (wave 44, patch)"  # the integrator's, and only it
    )
    assert_main_is_clean(seed_repo, base)


def test_forged_trailers_bounce(cfg: Config) -> None:
    make_lane(cfg, "victim", submit=False)
    make_lane(
        cfg,
        "forger",
        {"src/f.py": "f\n"},
        message="forger: work\n\nLanes-Wave: 44\nLanes-Lane: victim\nLanes-Fragments: none",
    )
    result = integrate.integrate(cfg, WAVE)
    assert [(b.lane, b.reason) for b in result.bounced] == [("forger", "forged-trailer")]
    assert landed_lanes(cfg.main_checkout) == []


# -- land = "squash" ------------------------------------------------------------------------


def set_squash(repo: Path, where: str) -> Config:
    """The operator sets land = "squash", in [tool.lanes] or in a lanes.toml (a commit on main
    by hand; lanes.toml then holds the whole configuration, its surfaces discovered)."""
    if where == "pyproject.toml":
        text = (repo / "pyproject.toml").read_text(encoding="utf-8")
        text = text.replace('test_command = ""', 'test_command = ""\nland = "squash"')
        commit_file(repo, "pyproject.toml", text, "ci: land lanes squashed")
    else:
        root = config.load(repo).settings.worktree_root
        toml = f'project = "jpcite"\nworktree_root = "{root}"\nland = "squash"\n'
        commit_file(repo, "lanes.toml", toml, "ci: a lanes.toml, landing lanes squashed")
    publish(repo)
    cfg = config.load(repo)
    assert cfg.settings.land == "squash"
    return cfg


def _commit_as(worktree: Path, rel: str, text: str, subject: str, author: str) -> str:
    (worktree / rel).parent.mkdir(parents=True, exist_ok=True)
    (worktree / rel).write_text(text, encoding="utf-8")
    git(worktree, "add", rel)
    git(worktree, "commit", "-q", "--author", author, "-m", subject)
    return git(worktree, "rev-parse", "HEAD")


@pytest.mark.parametrize("where", ["pyproject.toml", "lanes.toml"])
def test_squash_lands_each_lane_as_one_commit_listing_its_own(seed_repo: Path, where: str) -> None:
    cfg = set_squash(seed_repo, where)
    base = git(seed_repo, "rev-parse", "main")
    files, entry = migration("a", 261)
    wt_a = make_lane(cfg, "a", files, [manifest_frag(entry), version_frag("minor")], submit=False)
    first = git(wt_a, "rev-parse", "HEAD")
    second = _commit_as(wt_a, "src/a.py", "a = 1\n", "a: the code", "Agent A <a@lanes.invalid>")
    submit_mod.submit(cfg, WAVE, "a")
    make_lane(cfg, "b", {"src/b.py": "b = 1\n"}, [step("b-smoke")])
    make_lane(cfg, "c", {}, [version_frag("patch")])  # fragments only: still one commit

    rc, plan_doc = lanes_json(seed_repo, "integrate", WAVE, "--dry-run")
    assert rc == 0 and plan_doc["land"] == "squash"
    assert [(p["lane"], p["commits"], p["own_commits"]) for p in plan_doc["lanes"]] == [
        ("a", 1, 2),
        ("b", 1, 1),
        ("c", 1, 0),
    ]
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["a", "b", "c"], doc
    assert [len(ld["commits"]) for ld in doc["landings"]] == [1, 1, 1]
    subjects = git(seed_repo, "log", "--format=%s", f"{base}..main").splitlines()
    assert subjects == [
        "lanes: version 0.3.5 -> 0.4.0 (wave 44, minor)",
        "lanes: land 44/c",
        "lanes: land 44/b",
        "lanes: land 44/a",
    ]
    assert landed_lanes(seed_repo) == ["a", "b", "c"]
    [a_sha] = doc["landings"][0]["commits"]
    message = git(seed_repo, "log", "-1", "--format=%B", a_sha)
    assert f"- {first[:12]} a: work\n- {second[:12]} a: the code\n" in message
    assert f"manifest: + {entry}" in message
    keys = trailers.parse_trailers(message)
    assert (keys[trailers.WAVE], keys[trailers.LANE]) == (WAVE, "a")
    assert len(keys[trailers.FRAGMENTS].split(",")) == 2
    # its work and its fragments' changes in that one commit, authored by the lane's agent
    assert set(
        git(seed_repo, "diff-tree", "--no-commit-id", "--name-only", "-r", a_sha).split()
    ) == {
        f"scripts/migrations/{entry}",
        "src/a.py",
        scaffold.MANIFEST,
    }
    assert git(seed_repo, "log", "-1", "--format=%an <%ae>", a_sha) == "Agent A <a@lanes.invalid>"
    assert git(seed_repo, "rev-parse", f"{a_sha}^") == base
    assert "- none: fragments only" in git(seed_repo, "log", "-1", "--format=%B", "main~1")
    assert entry in manifest_surface.entries(show(seed_repo, scaffold.MANIFEST))
    assert "- name: b-smoke" in show(seed_repo, ".github/workflows/deploy.yml")
    assert [len(ev.details["commits"]) for ev in events(cfg, "integrated")] == [1, 1, 1]
    assert_main_is_clean(seed_repo, base)
    # nothing left to do: the trailers on main say all three are in
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert (
        rc == 0 and doc["integrated"] == [] and doc["head"] == git(seed_repo, "rev-parse", "main")
    )


@pytest.mark.parametrize("point", ["landed", "journal", *LANDING_POINTS, "archived"])
def test_squash_killed_then_rerun_lands_each_lane_once(seed_repo: Path, point: str) -> None:
    cfg = set_squash(seed_repo, "pyproject.toml")
    base = git(seed_repo, "rev-parse", "main")
    for lane, number in (("a", 261), ("b", 262)):
        files, entry = migration(lane, number)
        files[f"src/{lane}.py"] = f"{lane}\n"
        make_lane(cfg, lane, files, [manifest_frag(entry), version_frag("minor"), step(lane)])
    killed = run_lanes(seed_repo, "integrate", WAVE, "--json", env={"LANES_FAILPOINT": point})
    assert killed.returncode == -9, killed.stderr
    rerun = run_lanes(seed_repo, "integrate", WAVE, "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert landed_lanes(seed_repo) == ["a", "b"]  # once each
    assert git(seed_repo, "rev-list", "--count", f"{base}..main") == "3"  # a, b, the bump
    assert bumps_on_main(seed_repo) == ["minor 0.3.5 -> 0.4.0"]
    entries = manifest_surface.entries(show(seed_repo, scaffold.MANIFEST))
    assert Counter(entries)["261_a.sql"] == 1 and Counter(entries)["262_b.sql"] == 1
    deploy_text = show(seed_repo, ".github/workflows/deploy.yml")
    assert deploy_text.count("- name: a\n") == 1 and deploy_text.count("- name: b\n") == 1
    assert Counter(ev.lane for ev in events(cfg, "integrated")) == Counter(["a", "b"])
    for lane in ("a", "b"):
        assert list((cfg.claim_dir(WAVE, lane) / "fragments").iterdir()) == []
    assert claims.ledger(cfg, WAVE).verify().ok
    assert_main_is_clean(seed_repo, base)


# -- the version across passes ---------------------------------------------------------------


def test_the_wave_bumps_once_and_again_only_for_a_larger_bump(cfg: Config, seed_repo: Path) -> None:
    make_lane(cfg, "m1", {"src/m1.py": "1\n"}, [version_frag("minor")])
    assert integrate.integrate(cfg, WAVE).version_bump == "minor 0.3.5 -> 0.4.0"
    make_lane(cfg, "p1", {"src/p1.py": "1\n"}, [version_frag("patch")])
    make_lane(cfg, "m2", {"src/m2.py": "1\n"}, [version_frag("minor")])
    second = integrate.integrate(cfg, WAVE)
    assert second.version_bump is None and second.version == "0.4.0"
    make_lane(cfg, "big", {"src/big.py": "1\n"}, [version_frag("major")])
    third = integrate.integrate(cfg, WAVE)
    assert third.version_bump == "major 0.4.0 -> 1.0.0" and third.version == "1.0.0"
    assert bumps_on_main(seed_repo) == ["major 0.4.0 -> 1.0.0", "minor 0.3.5 -> 0.4.0"]
    # another wave bumps on its own
    make_lane(cfg, "next", {"src/n.py": "1\n"}, [version_frag("patch")], wave="45")
    assert integrate.integrate(cfg, "45").version_bump == "patch 1.0.0 -> 1.0.1"


def test_version_files_that_disagree_stop_the_pass_before_it_starts(
    cfg: Config, seed_repo: Path
) -> None:
    text = (seed_repo / "server.json").read_text().replace("0.3.5", "0.3.9")
    commit_file(seed_repo, "server.json", text, "hand edit")
    publish(seed_repo)
    make_lane(cfg, "x", {"src/x.py": "1\n"}, [version_frag("patch")])
    before = (git(seed_repo, "rev-parse", "main"), len(claims.ledger(cfg, WAVE).events()))
    with pytest.raises(BadInput) as err:
        integrate.integrate(cfg, WAVE)
    assert err.value.code == "main-versions-disagree" and err.value.exit_code == 2
    assert (git(seed_repo, "rev-parse", "main"), len(claims.ledger(cfg, WAVE).events())) == before


# -- other writers: another integrator, someone moving main, the user's checkout ------------

HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.local_coord  # holds the filelock; remote: test_remote_integrate, test_coord
def test_a_second_integrator_gets_exit_3(cfg: Config, seed_repo: Path) -> None:
    make_lane(cfg, "l1", {"src/l1.py": "1\n"})
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(cfg.state_dir / coord_local.LOCK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rc, doc = lanes_json(seed_repo, "integrate", WAVE)
        assert rc == 3 and doc["error"] == "integrator-running"
        assert state.lane_state(cfg, WAVE, "l1") == "submitted"
    finally:
        holder.kill()
        holder.communicate()
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)  # the kernel released the lock
    assert rc == 0 and doc["integrated"] == ["l1"]


def test_two_real_passes_at_once_one_runs(seed_repo: Path) -> None:
    cfg = set_test_command(seed_repo, "sleep 1")
    make_lane(cfg, "slow", {"src/slow.py": "1\n"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lanes", "integrate", WAVE, "--json"],
            cwd=seed_repo,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    codes = sorted(p.returncode for p in procs)
    docs = [json.loads(out) for out, _ in outs]
    assert codes == [0, 3], outs
    assert {d.get("error") for d in docs} == {None, "integrator-running"}
    assert landed_lanes(seed_repo) == ["slow"]


def test_main_moved_during_the_pass_loses_nothing_and_a_rerun_works(
    seed_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coord_mode: str
) -> None:
    flag = tmp_path / "move-main-once"
    flag.touch()
    monkeypatch.setenv("MOVE_FLAG", str(flag))
    monkeypatch.setenv("MAIN_REPO", str(seed_repo))
    cfg = set_test_command(
        seed_repo,
        'if [ -e "$MOVE_FLAG" ]; then rm "$MOVE_FLAG"; '
        'git -C "$MAIN_REPO" commit -q --allow-empty -m "someone else"'
        # on a remote, someone else moves main there
        + (' && git -C "$MAIN_REPO" push -q origin main' if coord_mode == "remote" else "")
        + "; fi",
    )
    make_lane(cfg, "m", {"src/m.py": "1\n"}, [manifest_frag("130_programs_index.sql")])
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 3 and doc["error"] == "main-moved"
    assert "changed nothing" in doc["message"] and "again" in doc["hint"]
    their = git(seed_repo, "rev-parse", "main")
    assert git(seed_repo, "log", "-1", "--format=%s", "main") == "someone else"
    assert state.lane_state(cfg, WAVE, "m") == "submitted"
    assert events(cfg, "integrate-done")[-1].details["aborted"] == "main-moved"
    assert len(list((cfg.claim_dir(WAVE, "m") / "fragments").iterdir())) == 1
    assert scratch_worktrees(cfg) == []
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == ["m"]
    assert git(seed_repo, "merge-base", "--is-ancestor", their, "main") == ""  # not lost


def test_dirty_checkout_is_left_alone_and_detached_so_nothing_reverts(
    cfg: Config, seed_repo: Path
) -> None:
    old = git(seed_repo, "rev-parse", "main")
    make_lane(cfg, "d", {"src/d.py": "1\n"})
    (seed_repo / "src" / "app.py").write_text("# work in progress\n")
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["d"] and result.checkout == "detached"
    assert (
        "uncommitted changes" in result.checkout_note
        and "git checkout main" in result.checkout_note
    )
    assert (seed_repo / "src" / "app.py").read_text() == "# work in progress\n"
    assert git(seed_repo, "rev-parse", "HEAD") == old and not (seed_repo / "src" / "d.py").exists()
    assert git(seed_repo, "status", "--porcelain", "--untracked-files=no") == "M src/app.py"
    git(seed_repo, "checkout", "-q", "main")  # what the note says: the work comes along
    assert (seed_repo / "src" / "d.py").exists()
    assert (seed_repo / "src" / "app.py").read_text() == "# work in progress\n"


def test_checkout_on_another_branch_is_not_touched(cfg: Config, seed_repo: Path) -> None:
    git(seed_repo, "checkout", "-q", "-b", "topic")
    make_lane(cfg, "t", {"src/t.py": "1\n"})
    result = integrate.integrate(cfg, WAVE)
    assert result.checkout == "not-on-main"
    assert git(seed_repo, "rev-parse", "--abbrev-ref", "HEAD") == "topic"
    assert not (seed_repo / "src" / "t.py").exists()


def test_no_submitted_lanes_is_a_quiet_pass(cfg: Config, seed_repo: Path) -> None:
    make_lane(cfg, "open", {"src/o.py": "1\n"}, submit=False)
    head = git(seed_repo, "rev-parse", "main")
    rc, doc = lanes_json(seed_repo, "integrate", WAVE)
    assert rc == 0 and doc["integrated"] == [] and doc["head"] == head
    assert [e.event for e in claims.ledger(cfg, WAVE).events()][-2:] == [
        "integrate-start",
        "integrate-done",
    ]


def test_an_unknown_wave_is_exit_2_and_writes_nothing(seed_repo: Path) -> None:
    make_lane(config.load(seed_repo), "a", {"src/a.py": "1\n"})
    before = snapshot(seed_repo)
    for args in (("integrate", "99"), ("integrate", "99", "--dry-run")):
        rc, doc = lanes_json(seed_repo, *args)
        assert (rc, doc["error"]) == (2, "unknown-wave") and WAVE in doc["hint"]
    assert snapshot(seed_repo) == before


def test_bad_wave_name_is_exit_2(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo, "integrate", "../x")
    assert rc == 2 and doc["error"] == "bad-wave"


def test_integrate_start_up_is_lazy() -> None:
    """`lanes --help` must not import the integrator (agents call lanes constantly)."""
    code = "import sys, lanes.cli; print('integrator.integrate' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    assert out.stdout.strip() == "False", out.stderr


def test_progress_goes_to_a_terminal_on_stderr_and_never_to_stdout(seed_repo: Path) -> None:
    import pty
    import select

    cfg = set_test_command(seed_repo, "true")
    for lane in ("p1", "p2", "p3"):
        make_lane(cfg, lane, {f"src/{lane}.py": "1\n"})
    quiet = run_lanes(seed_repo, "integrate", WAVE, "--dry-run", "--json")
    assert "lane 1/" not in quiet.stderr  # not a terminal: no progress
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lanes", "integrate", WAVE, "--json"],
        cwd=seed_repo,
        stdout=subprocess.PIPE,
        stderr=slave,
        text=True,
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert json.loads(out)["integrated"] == ["p1", "p2", "p3"]  # stdout: the result only
    text = shown.decode("utf-8", "replace")
    assert "testing 3 lane(s)" in text and "test passed" in text
