"""`lanes init`: a lanes.toml filled from what the repository holds, the inbox ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import config, scaffold
from lanes import git as lanes_git
from tests.conftest import commit_file, git, lanes_json, run_lanes, snapshot


@pytest.fixture
def unconfigured(seed_repo: Path) -> Path:
    """The seed's repository without its [tool.lanes] tables, on branch trunk."""
    pyproject = seed_repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().split("[tool.lanes]")[0])
    git(seed_repo, "branch", "-m", "main", "trunk")
    return seed_repo


def test_init_fills_every_section_from_a_seed_shaped_repository(unconfigured: Path) -> None:
    rc, doc = lanes_json(unconfigured / "scripts", "init")  # from a subfolder: same repository
    assert rc == 0 and doc["config_path"] == str(unconfigured / "lanes.toml")
    cfg = config.load(unconfigured)
    assert cfg.source == "lanes.toml"
    s = cfg.settings
    assert (s.project, s.main) == ("jpcite", "trunk")  # the branch the checkout is on
    assert s.manifest is not None and s.manifest.path == scaffold.MANIFEST
    assert s.manifest.entries_dir == "scripts/migrations"
    # the gate's RC3 check is on: the schema guard's list was found, not left commented out
    assert s.manifest.required == "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"
    assert s.version is not None and s.version.files == ["pyproject.toml", "server.json"]
    assert s.deploy is not None and s.deploy.workflow == ".github/workflows/deploy.yml"
    assert "/tools/offline/_inbox/" in (unconfigured / ".gitignore").read_text().splitlines()


def test_init_leaves_required_commented_out_when_no_list_is_found(unconfigured: Path) -> None:
    commit_file(unconfigured, "scripts/schema_guard.py", "REQUIRED_MIGRATIONS = compute()\n")
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and doc["required"] is None
    text = (unconfigured / "lanes.toml").read_text()
    assert "\n# required = " in text and "\nrequired = " not in text
    assert config.load(unconfigured).surfaces.manifest.required_status == "none"


def test_a_checkout_directory_name_with_spaces_gives_a_valid_project(
    unconfigured: Path, tmp_path: Path
) -> None:
    odd = unconfigured.rename(tmp_path / "my repo (copy)")
    assert lanes_json(odd, "init")[0] == 0
    assert config.load(odd).project == "my-repo-copy"


@pytest.mark.parametrize("configured_in", ["lanes.toml", "pyproject.toml"])
def test_init_refuses_to_replace_a_configuration_and_changes_nothing(
    unconfigured: Path, configured_in: str
) -> None:
    if configured_in == "lanes.toml":
        assert lanes_json(unconfigured, "init")[0] == 0
    else:
        with (unconfigured / "pyproject.toml").open("a") as fh:
            fh.write('\n[tool.lanes]\nworktree_root = "/srv/lanes"\n')
    before = snapshot(unconfigured)
    rc, doc = lanes_json(unconfigured, "init")
    assert (rc, doc["error"]) == (2, "config-exists") and "--force" in doc["hint"]
    assert configured_in in doc["message"]
    assert snapshot(unconfigured) == before


def test_names_needing_toml_escapes_are_written_escaped(unconfigured: Path) -> None:
    git(unconfigured, "branch", "-m", "trunk", 'dev-🚀-"q"')
    assert lanes_json(unconfigured, "init")[0] == 0
    assert config.load(unconfigured).settings.main == 'dev-🚀-"q"'


def _edit_guard(repo: Path, later: str) -> None:
    """Add `later` after the schema guard's list, committed (commands read main's tree)."""
    text = (repo / "scripts" / "schema_guard.py").read_text()
    commit_file(
        repo,
        "scripts/schema_guard.py",
        text.replace("\n\n\ndef check", f"\n{later}\n\n\ndef check", 1),
    )


def test_a_required_list_reassigned_later_is_not_offered(unconfigured: Path) -> None:
    _edit_guard(unconfigured, "AM_REQUIRED_MIGRATIONS = tuple(AM_REQUIRED_MIGRATIONS)")
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and doc["required"] is None
    assert config.load(unconfigured).surfaces.manifest.required_status == "none"


@pytest.mark.parametrize(
    "later",
    ["AM_REQUIRED_MIGRATIONS += ['b.sql']", "AM_REQUIRED_MIGRATIONS = OTHER = compute()"],
)
def test_a_required_list_the_gate_cannot_read_is_not_offered(
    unconfigured: Path, later: str
) -> None:
    _edit_guard(unconfigured, later)
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and doc["required"] is None
    assert config.load(unconfigured).surfaces.manifest.required_status == "none"


@pytest.mark.parametrize("what", ["lanes.toml", ".gitignore"])
def test_init_force_refuses_a_folder_in_the_way_and_writes_nothing(
    unconfigured: Path, what: str
) -> None:
    (unconfigured / what).unlink(missing_ok=True)
    (unconfigured / what).mkdir()
    before = snapshot(unconfigured)
    rc, doc = lanes_json(unconfigured, "init", "--force")
    assert (rc, doc["error"]) == (2, "bad-config")
    assert snapshot(unconfigured) == before


# -- what discovery found, written down -------------------------------------------------------


def test_init_json_keeps_its_fields_and_adds_the_surfaces(unconfigured: Path) -> None:
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0
    assert doc["gitignore"] == str(unconfigured / ".gitignore")
    assert doc["manifest"] == scaffold.MANIFEST
    assert doc["required"] == "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"
    assert doc["version_files"] == ["pyproject.toml", "server.json"]
    assert doc["deploy_workflow"] == ".github/workflows/deploy.yml"
    rows = {r["surface"]: r for r in doc["surfaces"]}
    assert set(rows) == {"manifest", "required", "version", "deploy"}
    assert {r["status"] for r in rows.values()} == {"discovered"}
    assert rows["deploy"]["paths"] == [".github/workflows/deploy.yml"]
    assert "workflow_run children" in rows["deploy"]["origin"]
    assert doc["discovered_in"] == "the main checkout" and doc["dry_run"] is False
    assert doc["config_text"] == (unconfigured / "lanes.toml").read_text()


def test_dry_run_prints_the_file_and_the_discovery_and_writes_nothing(unconfigured: Path) -> None:
    (unconfigured / ".gitignore").unlink()
    before = snapshot(unconfigured)
    proc = run_lanes(unconfigured, "init", "--dry-run")
    assert proc.returncode == 0 and snapshot(unconfigured) == before
    assert "deploy: discovered .github/workflows/deploy.yml" in proc.stderr
    assert "wrote nothing" in proc.stderr and "inbox would be ignored" in proc.stderr
    rc, doc = lanes_json(unconfigured, "init", "--dry-run")
    assert rc == 0 and doc["dry_run"] is True and snapshot(unconfigured) == before
    assert doc["config_text"] == proc.stdout and doc["gitignore_added"] is True
    assert [r["surface"] for r in doc["surfaces"]] == ["manifest", "required", "version", "deploy"]
    assert lanes_json(unconfigured, "init")[0] == 0  # the run writes what the dry run showed
    assert (unconfigured / "lanes.toml").read_text() == proc.stdout


def test_the_flags_are_written(unconfigured: Path) -> None:
    rc, _ = lanes_json(
        unconfigured, "init", "--project", "api", "--main", "release", "--worktree-root", "/srv"
    )
    assert rc == 0
    s = config.load(unconfigured).settings
    assert (s.project, s.main, s.worktree_root) == ("api", "release", "/srv")


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [
        ("--project", "a/b", "is not a project name"),
        ("--main", "two words", "is not a branch name"),
        ("--main", "", "is not a branch name"),
        ("--worktree-root", "relative/dir", "is not an absolute path"),
    ],
)
def test_bad_flag_values_exit_2_with_the_rule_and_write_nothing(
    unconfigured: Path, flag: str, value: str, rule: str
) -> None:
    before = snapshot(unconfigured)
    for dry in ([], ["--dry-run"]):
        rc, doc = lanes_json(unconfigured, "init", f"{flag}={value}", *dry)
        assert (rc, doc["error"]) == (2, "bad-config") and rule in doc["message"]
        assert doc["message"].startswith("lanes init: ")  # the flags, not a file, were wrong
        assert snapshot(unconfigured) == before


def _toml_of(repo: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads((repo / "lanes.toml").read_text())


def test_an_ambiguous_deploy_is_written_commented_out_with_its_candidates(
    unconfigured: Path,
) -> None:
    deploy = (unconfigured / ".github" / "workflows" / "deploy.yml").read_text()
    commit_file(unconfigured, ".github/workflows/deploy-prod.yml", deploy)
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and doc["deploy_workflow"] is None
    text = (unconfigured / "lanes.toml").read_text()
    assert "deploy" not in _toml_of(unconfigured)  # not chosen silently
    assert "\n# [deploy]\n" in text and "Pick the deploy workflow" in text
    assert '\n# workflow = ".github/workflows/deploy-prod.yml"\n' in text
    assert '\n# workflow = ".github/workflows/deploy.yml"\n' in text
    rows = {r["surface"]: r for r in doc["surfaces"]}
    assert rows["deploy"]["status"] == "ambiguous"
    # As written, every command still sees the ambiguity, and guards both files.
    surfaces = config.load(unconfigured).surfaces
    assert surfaces.deploy.status == "ambiguous"
    assert {".github/workflows/deploy.yml", ".github/workflows/deploy-prod.yml"} <= set(
        surfaces.contended()
    )


def test_a_surface_the_repository_lacks_is_written_commented_out(unconfigured: Path) -> None:
    git(unconfigured, "rm", "-q", "-r", "scripts/migrations", "server.json")
    (unconfigured / "pyproject.toml").write_text('[project]\nname = "x"\ndynamic = ["version"]\n')
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and (doc["manifest"], doc["version_files"]) == (None, [])
    written = _toml_of(unconfigured)
    assert "manifest" not in written and "version" not in written and "deploy" in written
    text = (unconfigured / "lanes.toml").read_text()
    assert "\n# [manifest]\n" in text and "\n# [version]\n" in text
    assert "# not read as a version: pyproject.toml: [project] declares the version dynamic" in text


def test_a_gradle_backend_with_a_workflow_run_chain(tmp_path: Path) -> None:
    """The public backend of the issue: backend_deploy.yml, a chain, a Gradle version."""
    repo = tmp_path / "backend"
    repo.mkdir()
    git(repo, "init", "-q", "--initial-branch=master")
    commit_file(repo, "build.gradle.kts", 'plugins {\n    java\n}\n\nversion = "2.4.1"\n')
    commit_file(
        repo,
        ".github/workflows/backend_deploy.yml",
        "name: Deploy backend to ECS\non:\n  push:\n    branches: [master]\njobs:\n  deploy:\n"
        "    runs-on: ubuntu-latest\n    steps:\n      - run: aws ecs update-service --force\n",
    )
    commit_file(
        repo,
        ".github/workflows/smoke.yml",
        'name: smoke\non:\n  workflow_run:\n    workflows: ["Deploy backend to ECS"]\n'
        "jobs:\n  smoke:\n    runs-on: ubuntu-latest\n    steps:\n      - run: curl -f x\n",
    )
    rc, doc = lanes_json(repo, "init")
    assert rc == 0
    assert doc["deploy_workflow"] == ".github/workflows/backend_deploy.yml"
    assert doc["version_files"] == ["build.gradle.kts"]
    s = config.load(repo).settings
    assert s.main == "master" and s.version is not None and s.deploy is not None
    assert s.deploy.workflow == ".github/workflows/backend_deploy.yml"


# -- the inbox in .gitignore ------------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["tools/", "/tools/offline/", "**/_inbox/", "tools/offline/*"])
def test_no_line_is_added_when_a_pattern_already_ignores_the_inbox(
    unconfigured: Path, pattern: str
) -> None:
    (unconfigured / ".gitignore").write_text(f"*.pyc\n{pattern}\n")
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and doc["gitignore_added"] is False
    assert doc["inbox_ignored_by"] == f".gitignore:2:{pattern}"
    assert (unconfigured / ".gitignore").read_text() == f"*.pyc\n{pattern}\n"


@pytest.mark.parametrize("existing", [None, "*.pyc", "tools/offline/*\n!tools/offline/_inbox/\n"])
def test_the_inbox_line_is_added_when_nothing_ignores_it(
    unconfigured: Path, existing: str | None
) -> None:
    gitignore = unconfigured / ".gitignore"
    gitignore.unlink()
    if existing is not None:
        gitignore.write_text(existing)
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and doc["gitignore_added"] is True and doc["inbox_ignored_by"] is None
    lines = gitignore.read_text().splitlines()
    assert lines[-1] == "/tools/offline/_inbox/" and lines[:-1] == (existing or "").splitlines()
    assert git(unconfigured, "check-ignore", "--no-index", "tools/offline/_inbox/x")


def test_a_symlinked_gitignore_is_refused_never_written_through(
    unconfigured: Path, tmp_path: Path
) -> None:
    """The link could lead to any file (issue 8: init wrote through it), and git does not
    read a linked .gitignore anyway."""
    shared = tmp_path / "shared.gitignore"
    shared.write_text("*.pyc")
    (unconfigured / ".gitignore").unlink()
    (unconfigured / ".gitignore").symlink_to(shared)
    before = snapshot(unconfigured)
    rc, doc = lanes_json(unconfigured, "init")
    assert (rc, doc["error"]) == (2, "bad-config") and "symbolic link" in doc["message"]
    assert shared.read_text() == "*.pyc" and snapshot(unconfigured) == before


def test_a_dangling_gitignore_link_is_refused_and_nothing_written(
    unconfigured: Path, tmp_path: Path
) -> None:
    (unconfigured / ".gitignore").unlink()
    (unconfigured / ".gitignore").symlink_to(tmp_path / "missing")
    before = snapshot(unconfigured)
    rc, doc = lanes_json(unconfigured, "init")
    assert (rc, doc["error"]) == (2, "bad-config") and snapshot(unconfigured) == before


def test_force_rewrites_from_discovery(unconfigured: Path) -> None:
    (unconfigured / "lanes.toml").write_text('project = "old"\n[deploy]\nenabled = false\n')
    rc, doc = lanes_json(unconfigured, "init", "--force")
    assert rc == 0 and doc["deploy_workflow"] == ".github/workflows/deploy.yml"
    assert config.load(unconfigured).settings.project == "jpcite"


def test_several_manifests_are_written_commented_out_to_pick_one(unconfigured: Path) -> None:
    odd = "scripts/migrations/boot\nmanifest.txt"  # git allows a newline in a file name
    commit_file(unconfigured, odd, "049_provenance_strengthen.sql\n")
    rc, doc = lanes_json(unconfigured, "init")
    assert rc == 0 and (doc["manifest"], doc["required"]) == (None, None)
    assert "manifest" not in _toml_of(unconfigured)  # still valid TOML: the name is escaped
    text = (unconfigured / "lanes.toml").read_text()
    assert "Pick the boot manifest" in text and "\n# [manifest]\n" in text
    assert f"\n# path = {scaffold.MANIFEST!r}\n".replace("'", '"') in text
    assert '\n# path = "scripts/migrations/boot\\nmanifest.txt"\n' in text
    assert config.load(unconfigured).surfaces.manifest.status == "ambiguous"


def test_ignored_by_names_the_rule_and_honours_negations(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("x/*\n!x/keep\n")
    assert lanes_git.ignored_by(repo, "x/other") == ".gitignore:1:x/*"
    assert lanes_git.ignored_by(repo, "x/keep") is None  # -v reports the negation: not ignored
    assert lanes_git.ignored_by(repo, "y/z") is None
