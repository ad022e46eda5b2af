"""`lanes init`: a lanes.toml filled from what the repository holds, the inbox ignored."""

from __future__ import annotations

from pathlib import Path

from lanes import config, scaffold
from tests.conftest import lanes_json, snapshot


def test_init_fills_every_section_from_a_seed_shaped_repository(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo / "scripts", "init")  # from a subfolder: same repository
    assert rc == 0 and doc["config_path"] == str(seed_repo / "lanes.toml")
    cfg = config.load(seed_repo)
    assert cfg.source == "lanes.toml"
    s = cfg.settings
    assert s.manifest is not None and s.manifest.path == scaffold.MANIFEST
    assert s.manifest.entries_dir == "scripts/migrations"
    # the gate's RC3 check is on: the schema guard's list was found, not left commented out
    assert s.manifest.required == "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"
    assert s.version is not None and s.version.files == ["pyproject.toml", "server.json"]
    assert s.deploy is not None and s.deploy.workflow == ".github/workflows/deploy.yml"
    assert "/tools/offline/_inbox/" in (seed_repo / ".gitignore").read_text().splitlines()


def test_init_leaves_required_commented_out_when_no_list_is_found(seed_repo: Path) -> None:
    (seed_repo / "scripts" / "schema_guard.py").write_text("REQUIRED_MIGRATIONS = compute()\n")
    assert lanes_json(seed_repo, "init")[0] == 0
    text = (seed_repo / "lanes.toml").read_text()
    assert "\n# required = " in text
    assert config.load(seed_repo).settings.manifest.required == ""  # type: ignore[union-attr]


def test_init_refuses_to_overwrite_and_changes_nothing(seed_repo: Path) -> None:
    assert lanes_json(seed_repo, "init")[0] == 0
    before = snapshot(seed_repo)
    rc, doc = lanes_json(seed_repo, "init")
    assert (rc, doc["error"]) == (2, "config-exists") and "--force" in doc["hint"]
    assert snapshot(seed_repo) == before
