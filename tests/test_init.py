"""`lanes init`: a lanes.toml filled from what the repository holds, the inbox ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import config, scaffold
from tests.conftest import git, lanes_json, snapshot


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
    (unconfigured / "scripts" / "schema_guard.py").write_text("REQUIRED_MIGRATIONS = compute()\n")
    assert lanes_json(unconfigured, "init")[0] == 0
    text = (unconfigured / "lanes.toml").read_text()
    assert "\n# required = " in text
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


def test_a_required_list_reassigned_later_is_not_offered(unconfigured: Path) -> None:
    guard = unconfigured / "scripts" / "schema_guard.py"
    guard.write_text(
        guard.read_text().replace(
            "\n\n\ndef check",
            "\nAM_REQUIRED_MIGRATIONS = tuple(AM_REQUIRED_MIGRATIONS)\n\n\ndef check",
            1,
        )
    )
    assert lanes_json(unconfigured, "init")[0] == 0
    assert config.load(unconfigured).surfaces.manifest.required_status == "none"


@pytest.mark.parametrize(
    "later",
    ["AM_REQUIRED_MIGRATIONS += ['b.sql']", "AM_REQUIRED_MIGRATIONS = OTHER = compute()"],
)
def test_a_required_list_the_gate_cannot_read_is_not_offered(
    unconfigured: Path, later: str
) -> None:
    guard = unconfigured / "scripts" / "schema_guard.py"
    guard.write_text(guard.read_text().replace("\n\n\ndef check", f"\n{later}\n\n\ndef check", 1))
    assert lanes_json(unconfigured, "init")[0] == 0
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
