"""submit: a lane that edited a contended surface is refused and told what to use instead."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from lanes import claims, config, state
from lanes.surfaces import protected
from tests.conftest import commit_file, git, lanes_json


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("scripts/migrations/autonomath_boot_manifest.txt", "lanes fragment manifest"),
        ("pyproject.toml", "lanes fragment version"),
        ("server.json", "lanes fragment version"),
        (".github/workflows/deploy.yml", "lanes fragment deploy"),
    ],
)
def test_submit_refuses_a_contended_edit_naming_file_and_fragment(
    seed_repo: Path, cfg: config.Config, path: str, fragment: str
) -> None:
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")
    wt = Path(doc["worktree"])
    commit_file(wt, "src/ok.py", "ok = 1\n")
    commit_file(wt, path, (wt / path).read_text() + "\n# edited by a lane\n")
    rc, doc = lanes_json(wt, "submit")
    assert rc == 4
    assert doc["error"] == "touches-contended-surface"
    assert path in doc["message"] and fragment in doc["message"]
    assert [f["path"] for f in doc["files"]] == [path]
    assert state.lane_state(cfg, "44", "a") == "claimed"
    assert claims.ledger(cfg, "44").events()[-1].event == "submit-refused"


def test_protected_globs_are_refused_too(seed_repo: Path) -> None:
    text = (seed_repo / "pyproject.toml").read_text()
    (seed_repo / "pyproject.toml").write_text(
        text.replace(
            'stale_after = "30m"', 'stale_after = "30m"\nprotected = ["fly.toml", "ops/*"]'
        )
    )
    rc, doc = lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")
    wt = Path(doc["worktree"])
    commit_file(wt, "ops/runbook.md", "steps\n")
    rc, doc = lanes_json(wt, "submit")
    assert rc == 4 and doc["files"][0]["surface"] == "protected"


def test_a_clean_lane_is_submitted_in_order(seed_repo: Path, cfg: config.Config) -> None:
    for lane in ("b", "a"):
        rc, doc = lanes_json(seed_repo, "claim", "44", lane, "--agent", f"bot-{lane}")
        commit_file(Path(doc["worktree"]), f"src/{lane}.py", f"{lane} = 1\n")
    assert lanes_json(seed_repo, "submit", "44", "b")[0] == 0
    rc, doc = lanes_json(seed_repo, "submit", "44", "a")
    assert rc == 0 and doc["commits"] == 1
    assert [h.lane for h in state.submitted_in_order(cfg, "44")] == ["b", "a"]
    rc, doc = lanes_json(seed_repo, "submit", "44", "a")
    assert rc == 4 and doc["error"] == "lane-not-open"
    commit_file(cfg.main_checkout, "src/main_moved.py", "m = 1\n")
    assert state.lane_state(cfg, "44", "b") == "submitted"


@pytest.mark.parametrize(
    ("path", "glob", "held"),
    [
        ("fly.toml", "fly.toml", True),
        ("Dockerfile", "**/Dockerfile", True),
        ("svc/Dockerfile", "**/Dockerfile", True),
        ("infra/main.tf", "infra/", True),
        ("infra/net/vpc.tf", "infra", True),
        ("infra.md", "infra", False),
        ("ops/run.sh", "ops/*", True),
        ("src/fly.toml.md", "fly.toml", False),
        ("docs/a.md", "*.py", False),
    ],
)
def test_protected_globs_match_as_people_write_them(path: str, glob: str, held: bool) -> None:
    assert protected.is_protected(path, glob) is held


def test_submit_refuses_a_lane_that_changes_lanes_toml(seed_repo: Path) -> None:
    wt = Path(lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")[1]["worktree"])
    commit_file(wt, "lanes.toml", 'test_command = "true"\n')
    rc, doc = lanes_json(wt, "submit")
    assert rc == 4 and doc["files"] == [
        {
            "path": "lanes.toml",
            "surface": "config",
            "instead": "nothing: ask the operator to change it",
        }
    ]
    for command in doc["restore"]:  # a file the branch added is removed, not checked out
        git(wt, *shlex.split(command)[1:])
    assert not (wt / "lanes.toml").exists()
    assert lanes_json(wt, "submit")[0] == 0


def test_the_refusal_names_the_exact_fragment_and_its_restore_command_works(
    seed_repo: Path,
) -> None:
    wt = Path(lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")[1]["worktree"])
    manifest = "scripts/migrations/autonomath_boot_manifest.txt"
    commit_file(wt, "scripts/migrations/267_dim_a.sql", "SELECT 1;\n")
    commit_file(wt, manifest, (wt / manifest).read_text() + "267_dim_a.sql  # wave 44\n")
    commit_file(seed_repo, "src/other.py", "o = 1\n")  # main moves on
    git(wt, "rebase", "-q", "main")  # the base the claim recorded is no longer the fork point
    rc, doc = lanes_json(wt, "submit")
    assert rc == 4 and doc["files"][0]["instead"] == "lanes fragment manifest 267_dim_a.sql"
    assert doc["compared_with"] == git(seed_repo, "rev-parse", "main")
    for command in doc["restore"]:  # git checkout <fork point> -- <files>; git commit
        git(wt, *shlex.split(command)[1:])
    assert lanes_json(wt, "fragment", "manifest", "267_dim_a.sql")[0] == 0
    assert lanes_json(wt, "submit")[0] == 0


def test_submit_warns_of_a_manifest_entry_whose_file_is_nowhere(seed_repo: Path) -> None:
    wt = Path(lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")[1]["worktree"])
    (wt / "scripts/migrations/267_dim_a.sql").write_text("SELECT 1;\n")  # on disk: fine
    rc, doc = lanes_json(wt, "fragment", "manifest", "267_dim_a.sql", "268_not_written.sql")
    assert rc == 0 and [w.split(":")[0] for w in doc["warnings"]] == [
        "manifest entry 268_not_written.sql"
    ]
    commit_file(wt, "scripts/migrations/267_dim_a.sql", "SELECT 1;\n")
    rc, doc = lanes_json(wt, "submit")
    assert rc == 0  # said, not refused: another lane may bring the file
    [warning] = doc["warnings"]
    assert warning.startswith("manifest entry 268_not_written.sql: no such file")
