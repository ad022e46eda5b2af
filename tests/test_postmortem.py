"""The post-mortem's repository, configured only with `project` and `worktree_root`.

Every surface is discovered, and the gate, the submit guard and the fragments behave
exactly as they do with every section written out (the same tests, run both ways). With
`enabled = false` a check is off, and said to be off.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from integrator import gate
from lanes import config, scaffold
from tests.conftest import commit_file, git, lanes_json, run_lanes

MANIFEST = scaffold.MANIFEST
VERIFY = ".github/workflows/verify.yml"
WRITTEN = f"""
[manifest]
path = "{MANIFEST}"
entries_dir = "scripts/migrations"
required = "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"

[version]
files = ["pyproject.toml", "server.json"]

[deploy]
workflow = ".github/workflows/deploy.yml"
"""


@pytest.fixture(params=["discovered", "written"])
def postmortem(request: pytest.FixtureRequest, tmp_path: Path, worktree_root: Path) -> Path:
    """The seed's layout; lanes.toml sets project and worktree_root, and, for "written",
    every section. pyproject.toml keeps no [tool.lanes]: lanes.toml is the configuration."""
    repo = scaffold.make_seed_repo(tmp_path / "jpcite", worktree_root)
    pyproject = (repo / "pyproject.toml").read_text(encoding="utf-8")
    (repo / "pyproject.toml").write_text(pyproject.split("[tool.lanes]")[0], encoding="utf-8")
    text = f'project = "jpcite"\nworktree_root = "{worktree_root}"\n'
    if request.param == "written":
        text += WRITTEN
    (repo / "lanes.toml").write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lanes: configuration")
    return repo


def _failed(repo: Path) -> list[str]:
    return gate.verify(config.load(repo)).failed


def _version_of(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


# Each breakage of the post-mortem, committed on main alone, and the one check it fails.
BREAKAGES = {
    "empty-manifest": (
        lambda repo: commit_file(repo, MANIFEST, "# Wave 22: shipped empty\n"),
        ["manifest-required"],
    ),
    "one-required-missing": (
        lambda repo: commit_file(
            repo, MANIFEST, "\n".join(r for r in scaffold.REQUIRED if not r.startswith("090"))
        ),
        ["manifest-required"],
    ),
    "missing-migration": (
        lambda repo: commit_file(
            repo,
            MANIFEST,
            (repo / MANIFEST).read_text(encoding="utf-8") + "261_never_committed.sql\n",
        ),
        ["manifest-entries-exist"],
    ),
    "child-without-dispatch": (
        lambda repo: commit_file(
            repo, VERIFY, scaffold.VERIFY.replace("  workflow_dispatch: {}\n", "")
        ),
        ["deploy-chain"],
    ),
    "guard-on-parent-event": (
        lambda repo: commit_file(
            repo,
            VERIFY,
            scaffold.VERIFY.replace(
                "      - name: healthz\n",
                "      - name: healthz\n        if: github.event.workflow_run.event == 'push'\n",
            ),
        ),
        ["deploy-chain"],
    ),
    "version-drift": (
        lambda repo: commit_file(
            repo,
            "server.json",
            _version_of((repo / "server.json").read_text(encoding="utf-8"), "0.3.5", "0.3.6"),
        ),
        ["versions-agree"],
    ),
    "duplicated-number": (
        lambda repo: commit_file(repo, "scripts/migrations/049_other_branch.sql", "SELECT 2;\n"),
        ["migration-numbers-unique"],
    ),
}


def test_the_clean_repository_passes(postmortem: Path) -> None:
    report = gate.verify(config.load(postmortem))
    assert report.ok, report.failed
    assert {c.status for c in report.checks} == {"pass", "none"}  # none: no wave yet
    assert [c.name for c in report.checks if c.status == "none"] == [
        "wave-integrated",
        "main-linear",
    ]


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_breakage_fails_its_check(postmortem: Path, breakage: str) -> None:
    make, expected = BREAKAGES[breakage]
    make(postmortem)
    assert _failed(postmortem) == expected
    proc = run_lanes(postmortem, "verify", "--json")
    assert proc.returncode == 4
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["failed"] == expected
    assert [c["status"] for c in doc["checks"] if c["name"] in expected] == ["fail"] * len(expected)


def test_verify_says_what_was_discovered_and_from_where(postmortem: Path) -> None:
    rc, doc = lanes_json(postmortem, "verify")
    assert rc == 0
    rows = {row["surface"]: row for row in doc["surfaces"]}
    written = "[manifest] path" in rows["manifest"]["origin"]
    expected = "configured" if written else "discovered"
    assert {row["status"] for row in rows.values()} == {expected}
    assert rows["manifest"]["paths"] == [MANIFEST]
    assert rows["required"]["paths"] == ["scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"]
    assert rows["version"]["paths"] == ["pyproject.toml", "server.json"]
    assert rows["deploy"]["paths"] == [".github/workflows/deploy.yml"]
    human = run_lanes(postmortem, "verify")
    assert f"manifest: {expected} {MANIFEST}" in " ".join(human.stderr.split())


SURFACE_EDITS = {
    "manifest": (MANIFEST, lambda t: t + "130_programs_index.sql\n"),
    "pyproject": ("pyproject.toml", lambda t: _version_of(t, '"0.3.5"', '"0.4.0"')),
    "server.json": ("server.json", lambda t: _version_of(t, '"0.3.5"', '"0.4.0"')),
    "deploy": (".github/workflows/deploy.yml", lambda t: t + "# tweak\n"),
    "lanes.toml": ("lanes.toml", lambda t: t + 'test_command = "true"\n'),
}


@pytest.mark.parametrize("surface", sorted(SURFACE_EDITS))
def test_submit_refuses_an_edit_of_each_surface(postmortem: Path, surface: str) -> None:
    path, edit = SURFACE_EDITS[surface]
    rc, doc = lanes_json(postmortem, "claim", "45", "a", "--agent", "claude-1")
    assert rc == 0
    wt = Path(doc["worktree"])
    commit_file(wt, path, edit((wt / path).read_text(encoding="utf-8")))
    rc, doc = lanes_json(wt, "submit")
    assert (rc, doc["error"]) == (4, "touches-contended-surface")
    assert [f["path"] for f in doc["files"]] == [path]


def test_fragments_land_and_the_gate_passes(postmortem: Path, tmp_path: Path) -> None:
    rc, doc = lanes_json(postmortem, "claim", "45", "dim-a", "--agent", "claude-1")
    assert rc == 0
    wt = Path(doc["worktree"])
    commit_file(wt, "scripts/migrations/267_dim_a.sql", "CREATE TABLE dim_a (id TEXT);\n")
    patch = tmp_path / "region.yml"
    patch.write_text("- {op: add, path: /jobs/deploy/env/REGION, value: nrt}\n", encoding="utf-8")
    for args in (
        ("manifest", "267_dim_a.sql"),
        ("version", "minor"),
        ("deploy", str(patch)),
    ):
        rc, doc = lanes_json(wt, "fragment", *args)
        assert rc == 0, doc
    assert lanes_json(wt, "submit")[0] == 0
    rc, doc = lanes_json(postmortem, "integrate", "45")
    assert rc == 0 and doc["integrated"] == ["dim-a"] and doc["version"] == "0.4.0"
    main = postmortem
    assert "267_dim_a.sql" in git(main, "show", f"main:{MANIFEST}").splitlines()
    assert '"version": "0.4.0"' in git(main, "show", "main:server.json")
    assert 'version = "0.4.0"' in git(main, "show", "main:pyproject.toml")
    assert "REGION: nrt" in git(main, "show", "main:.github/workflows/deploy.yml")
    rc, doc = lanes_json(postmortem, "verify", "45")
    assert rc == 0, [c for c in doc["checks"] if not c["ok"]]
    assert {c["name"]: c["status"] for c in doc["checks"]}["wave-integrated"] == "pass"


def test_a_section_switched_off_is_off_and_its_surface_unguarded(postmortem: Path) -> None:
    text = (postmortem / "lanes.toml").read_text(encoding="utf-8")
    if "[version]" in text:  # written: replace the section
        before, _, after = text.partition('[version]\nfiles = ["pyproject.toml", "server.json"]\n')
        text = before + after
    (postmortem / "lanes.toml").write_text(text + "\n[version]\nenabled = false\n", "utf-8")
    git(postmortem, "commit", "-qam", "lanes: no version surface")
    commit_file(
        postmortem,
        "server.json",
        _version_of((postmortem / "server.json").read_text(encoding="utf-8"), "0.3.5", "0.3.6"),
    )
    report = gate.verify(config.load(postmortem))
    versions = next(c for c in report.checks if c.name == "versions-agree")
    assert (versions.status, versions.ok) == ("off", True)
    assert report.ok
    human = run_lanes(postmortem, "verify")
    assert human.returncode == 0 and "versions-agree" in human.stderr  # named as not checked
    rc, doc = lanes_json(postmortem, "claim", "45", "b", "--agent", "claude-2")
    wt = Path(doc["worktree"])
    rc, doc = lanes_json(wt, "fragment", "version", "patch")
    assert (rc, doc["error"], doc["status"]) == (2, "no-surface", "off")
    commit_file(wt, "server.json", (wt / "server.json").read_text(encoding="utf-8") + " ")
    assert lanes_json(wt, "submit")[0] == 0  # switched off: not a contended file any more


def test_status_says_what_was_discovered(postmortem: Path) -> None:
    rc, doc = lanes_json(postmortem, "status")
    assert rc == 0 and doc["lanes"] == []
    rows = {row["surface"]: (row["status"], row["paths"]) for row in doc["surfaces"]}
    mode = "configured" if "[manifest]" in (postmortem / "lanes.toml").read_text() else "discovered"
    assert rows["deploy"] == (mode, [".github/workflows/deploy.yml"])
    assert rows["version"] == (mode, ["pyproject.toml", "server.json"])
    human = run_lanes(postmortem, "status")
    assert human.returncode == 0
    assert f"deploy: {mode} .github/workflows/deploy.yml" in " ".join(human.stderr.split())


@pytest.mark.parametrize(
    "op",
    [
        "- {op: remove, path: /jobs}",
        "- {op: remove, path: /on/workflow_dispatch}",
        "- {op: add, path: /jobs/deploy/if, value: \"github.event_name == 'push'\"}",
    ],
)
def test_a_deploy_patch_that_breaks_the_chain_bounces(
    postmortem: Path, tmp_path: Path, op: str
) -> None:
    """What the gate proves of the deploy workflow, the pass keeps: a lane's patch that
    would remove its jobs, its dispatch trigger, or guard it against a dispatch bounces."""
    rc, doc = lanes_json(postmortem, "claim", "45", "x", "--agent", "claude-1")
    wt = Path(doc["worktree"])
    patch = tmp_path / "patch.yml"
    patch.write_text(op + "\n", encoding="utf-8")
    assert lanes_json(wt, "fragment", "deploy", str(patch))[0] == 0
    assert lanes_json(wt, "submit")[0] == 0
    before = git(postmortem, "rev-parse", "main")
    rc, doc = lanes_json(postmortem, "integrate", "45")
    assert rc == 4 and doc["integrated"] == []
    assert [b["reason"] for b in doc["bounced"]] == ["deploy-breaks-chain"]
    assert git(postmortem, "rev-parse", "main") == before


def test_the_gate_fails_a_deploy_workflow_without_jobs(postmortem: Path) -> None:
    deploy = ".github/workflows/deploy.yml"
    text = (postmortem / deploy).read_text(encoding="utf-8")
    commit_file(postmortem, deploy, text.split("\njobs:")[0] + "\njobs: {}\n")
    report = gate.verify(config.load(postmortem))
    assert report.failed == ["deploy-chain"]
    chain = next(c for c in report.checks if c.name == "deploy-chain")
    assert "defines no jobs" in chain.detail


@pytest.mark.parametrize(
    ("written", "path"),
    [
        ('[version]\nfiles = ["./server.json", "pyproject.toml"]\n', "server.json"),
        ('[manifest]\npath = "scripts//migrations/autonomath_boot_manifest.txt"\n', MANIFEST),
        ('[deploy]\nworkflow = "./.github/workflows/deploy.yml"\n', ".github/workflows/deploy.yml"),
    ],
)
def test_configured_paths_are_compared_as_git_writes_them(
    tmp_path: Path, worktree_root: Path, written: str, path: str
) -> None:
    """`./server.json` never matched git's `server.json`, so the guard was off (issue 8,
    case 5): the configuration's paths are normalised."""
    repo = scaffold.make_seed_repo(tmp_path / "jpcite", worktree_root)
    (repo / "lanes.toml").write_text(f'worktree_root = "{worktree_root}"\n{written}', "utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "lanes: configuration")
    rc, doc = lanes_json(repo, "claim", "45", "n", "--agent", "bot")
    wt = Path(doc["worktree"])
    commit_file(wt, path, (wt / path).read_text(encoding="utf-8") + "\n")
    rc, doc = lanes_json(wt, "submit")
    assert (rc, doc["error"]) == (4, "touches-contended-surface")
    assert [f["path"] for f in doc["files"]] == [path]


def test_a_required_list_with_no_manifest_fails_the_gate(postmortem: Path) -> None:
    """The manifest deleted or renamed on main, the schema guard still requiring five
    migrations: the RC3 outage itself, never `none`."""
    written = "[manifest]" in (postmortem / "lanes.toml").read_text(encoding="utf-8")
    git(postmortem, "rm", "-q", MANIFEST)
    git(postmortem, "commit", "-qm", "hotfix: drop the manifest")
    report = gate.verify(config.load(postmortem))
    check = next(c for c in report.checks if c.name == "manifest-required")
    assert check.status == "fail" and not report.ok
    # written: the configured manifest is missing; discovered: a list requires migrations
    # that no manifest allows.
    assert ("is not in main's tree" if written else "RC3") in check.detail


def test_a_lane_may_not_change_what_discovery_finds(postmortem: Path) -> None:
    """A new look-alike required list (or a second deploy workflow that ties) in a lane
    would move the rules for every lane after it: refused, where the section is left to
    discovery."""
    written = "[manifest]" in (postmortem / "lanes.toml").read_text(encoding="utf-8")
    rc, doc = lanes_json(postmortem, "claim", "45", "sly", "--agent", "bot")
    wt = Path(doc["worktree"])
    commit_file(wt, "scripts/migrate_required.py", 'MIGRATIONS_REQUIRED_FOR_TESTS = ["x.sql"]\n')
    commit_file(
        wt,
        ".github/workflows/deploy-staging.yml",
        scaffold.DEPLOY.replace("name: deploy", "name: deploy staging"),
    )
    rc, doc = lanes_json(wt, "submit")
    if written:
        assert rc == 0, doc  # every section written: nothing can move
        return
    assert (rc, doc["error"]) == (4, "touches-contended-surface")
    assert {f["surface"] for f in doc["files"]} == {"discovery"}
    paths = {f["path"] for f in doc["files"]}
    assert (
        "scripts/migrate_required.py" in paths and ".github/workflows/deploy-staging.yml" in paths
    )
