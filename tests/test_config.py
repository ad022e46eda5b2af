"""Configuration: defaults, lanes.toml over [tool.lanes], unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import config
from lanes.errors import BadInput
from tests.conftest import git, lanes_json, snapshot


def _bare_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("x\n")
    git(path, "add", ".")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return path


def test_a_repository_without_configuration_works(tmp_path: Path) -> None:
    repo = _bare_repo(tmp_path / "plain")
    cfg = config.load(repo)
    assert cfg.source == "defaults"
    assert cfg.project == "plain"
    assert cfg.main == "main"
    assert cfg.stale_after_seconds == 30 * 60
    assert cfg.inbox == repo / "tools/offline/_inbox"
    assert cfg.worktree_path("44", "a") == Path("/tmp/plain-44-a")
    assert cfg.contended_surfaces() == []


def test_seed_configuration_is_read_from_pyproject(cfg: config.Config) -> None:
    assert cfg.source == "pyproject.toml"
    assert cfg.project == "jpcite"
    assert cfg.contended_surfaces() == [
        "scripts/migrations/autonomath_boot_manifest.txt",
        "pyproject.toml",
        "server.json",
        ".github/workflows/deploy.yml",
    ]


def test_lanes_toml_wins_over_pyproject(seed_repo: Path) -> None:
    (seed_repo / "lanes.toml").write_text('project = "other"\nstale_after = "2h"\n')
    cfg = config.load(seed_repo)
    assert (cfg.source, cfg.project, cfg.stale_after_seconds) == ("lanes.toml", "other", 7200)
    assert cfg.settings.manifest is None  # sections are not merged across files


def test_config_is_found_from_inside_a_linked_worktree(seed_repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "linked"
    git(seed_repo, "worktree", "add", "-q", str(wt), "-b", "side")
    cfg = config.load(wt / "src")
    assert cfg.main_checkout == seed_repo
    assert cfg.inbox == seed_repo / "tools/offline/_inbox"


def test_commands_from_a_subfolder_of_the_main_checkout_find_it(seed_repo: Path) -> None:
    # git prints --git-common-dir relative to where it runs: ../../.git here.
    deep = seed_repo / "scripts" / "migrations"
    assert config.load(deep).main_checkout == seed_repo
    rc, doc = lanes_json(deep, "claim", "44", "a", "--agent", "bot")
    assert rc == 0 and doc["claim_dir"].startswith(str(seed_repo))
    rc, doc = lanes_json(deep, "status")
    assert rc == 0 and [ln["lane"] for ln in doc["lanes"]] == ["a"]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('projekt = "x"\n', "projekt"),
        ('[manifest]\npath = "m.txt"\nentris_dir = "x"\n', "manifest.entris_dir"),
        ('stale_after = "soon"\n', "stale_after"),
        ('inbox = "/etc"\n', "inbox"),
        ('inbox = "../outside"\n', "inbox"),
        ("protected = 3\n", "protected"),
        ('project = "../esc"\n', "project"),
        ('project = "a/b"\n', "project"),
        ('worktree_root = "wt"\n', "worktree_root"),
        ('inbox = ""\n', "inbox"),
        ('inbox = "."\n', "inbox"),
        ('inbox = ".git/lanes"\n', "inbox"),
        ('main = ""\n', "main"),
        ('stale_after = "0s"\n', "stale_after"),
        ("main = \n", "TOML"),
    ],
)
def test_bad_configuration_is_refused_with_exit_2_naming_the_key(
    seed_repo: Path, text: str, named: str
) -> None:
    (seed_repo / "lanes.toml").write_text(text)
    with pytest.raises(BadInput) as info:
        config.load(seed_repo)
    assert named in info.value.message
    before = snapshot(seed_repo)
    rc, doc = lanes_json(seed_repo, "status")
    assert rc == 2
    assert doc["error"] == "bad-config"
    assert named in doc["message"]
    assert snapshot(seed_repo) == before


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("1d", 86400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert config.parse_duration(text) == seconds


def test_a_bare_number_of_seconds_is_a_duration_too(seed_repo: Path) -> None:
    (seed_repo / "lanes.toml").write_text("stale_after = 90\n")
    assert config.load(seed_repo).stale_after_seconds == 90


def test_the_hint_lists_the_keys_of_the_section_that_has_the_unknown_one(seed_repo: Path) -> None:
    (seed_repo / "lanes.toml").write_text('[manifest]\npath = "m.txt"\nentris_dir = "x"\n')
    with pytest.raises(BadInput) as info:
        config.load(seed_repo)
    assert info.value.hint.startswith(
        "known keys in [manifest]: enabled, path, entries_dir, required"
    )


@pytest.mark.parametrize(
    "text",
    [
        '[manifest]\npath = "../outside.txt"\n',
        '[manifest]\npath = ""\n',
        '[version]\nfiles = ["../../etc/passwd"]\n',
        '[deploy]\nworkflow = "/abs/deploy.yml"\n',
    ],
)
def test_surface_paths_outside_the_repository_are_refused(seed_repo: Path, text: str) -> None:
    (seed_repo / "lanes.toml").write_text(text)
    with pytest.raises(BadInput) as info:
        config.load(seed_repo)
    message = info.value.message
    assert "not a path inside the repository" in message or "needs path" in message


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
def test_a_lanes_toml_that_cannot_be_read_is_refused_not_skipped(
    seed_repo: Path, kind: str
) -> None:
    target = seed_repo / "lanes.toml"
    if kind == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"\xff\xfe")
    rc, doc = lanes_json(seed_repo, "status")
    assert (rc, doc["error"]) == (2, "bad-config")


def test_heartbeat_and_help_never_run_discovery(seed_repo: Path) -> None:
    """Agents call these hundreds of times: discovery (a tree listing and file reads) must
    not run, nor even be imported, for them."""
    import subprocess
    import sys

    rc, doc = lanes_json(seed_repo, "claim", "44", "hb", "--agent", "bot")
    assert rc == 0
    probe = (
        "import sys, runpy; sys.argv = ['lanes', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('lanes', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('lanes.discover' in sys.modules, file=sys.stderr)"
    )
    for cwd, args in ((Path(doc["worktree"]), ["heartbeat"]), (seed_repo, ["--help"])):
        proc = subprocess.run(
            [sys.executable, "-c", probe, *args], cwd=cwd, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == "False", args
