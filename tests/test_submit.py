"""submit: a lane that edited a contended surface is refused and told what to use instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes import claims, config, state
from lanes.surfaces import protected
from tests.conftest import commit_file, git, lanes_json
from tests.test_integrate import assert_main_is_clean, run_restore, version_at


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
    added = git(wt, "rev-parse", "HEAD")
    assert rc == 4 and doc["files"] == [
        {
            "path": "lanes.toml",
            "surface": "config",
            "instead": "nothing: ask the operator to change it",
            "commits": [{"sha": added, "subject": "add lanes.toml"}],
        }
    ]
    run_restore(wt, doc["restore"])  # a file the branch added is removed, not checked out
    assert not (wt / "lanes.toml").exists()
    # nothing else was in the lane: it is back where it left main, with no commit at all
    assert git(wt, "rev-parse", "HEAD") == git(seed_repo, "rev-parse", "main")
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
    run_restore(wt, doc["restore"])  # history rewritten onto the fork point
    assert git(wt, "rev-parse", "HEAD~1") == doc["compared_with"]
    assert git(wt, "log", "--format=", "--name-only", "main..HEAD").split() == [
        "scripts/migrations/267_dim_a.sql"
    ]
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


def _edit_then_put_back(wt: Path, path: str, edit: str) -> tuple[str, str]:
    """Commit an edit of `path`, then a commit that puts it back exactly: no net change."""
    text = (wt / path).read_text()
    edited = commit_file(wt, path, edit, f"edit {path}")
    back = commit_file(wt, path, text, f"put {path} back")
    return edited, back


def test_an_edit_put_back_later_is_refused_and_the_recovery_rewrites_the_history(
    seed_repo: Path, cfg: config.Config
) -> None:
    base = git(seed_repo, "rev-parse", "main")
    wt = Path(lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")[1]["worktree"])
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    text = (wt / "server.json").read_text()
    edited, back = _edit_then_put_back(wt, "server.json", text.replace('"0.3.5"', '"0.4.0"'))
    commit_file(wt, "src/b.py", "b = 1\n", "a: more work")
    assert git(wt, "diff", "--name-only", base, "HEAD") == "src/a.py\nsrc/b.py"  # net: clean
    assert version_at(wt, edited) == {"pyproject.toml": "0.3.5", "server.json": "0.4.0"}

    rc, doc = lanes_json(wt, "submit")
    assert rc == 4 and doc["error"] == "touches-contended-surface"
    [found] = doc["files"]
    assert (found["path"], found["surface"]) == ("server.json", "version")
    assert [c["sha"] for c in found["commits"]] == [edited, back]
    assert edited[:12] in doc["message"] and back[:12] in doc["message"]
    assert " && ".join(doc["restore"]) in doc["hint"]
    assert state.lane_state(cfg, "44", "a") == "claimed"
    assert claims.ledger(cfg, "44").events()[-1].details["commits"] == sorted([edited, back])

    run_restore(wt, doc["restore"])
    assert git(wt, "rev-parse", "HEAD~1") == base  # one commit on the fork point
    assert git(wt, "diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD").split() == [
        "src/a.py",
        "src/b.py",
    ]
    message = git(wt, "log", "-1", "--format=%B")
    for subject in ("a: work", "edit server.json", "put server.json back", "a: more work"):
        assert f"- {subject}" in message
    assert git(wt, "status", "--porcelain") == ""
    assert lanes_json(wt, "fragment", "version", "minor")[0] == 0
    rc, doc = lanes_json(wt, "submit")
    assert rc == 0 and doc["commits"] == 1
    rc, doc = lanes_json(seed_repo, "integrate", "44")
    assert rc == 0 and doc["integrated"] == ["a"] and doc["version"] == "0.4.0"
    commits = assert_main_is_clean(seed_repo, base)
    assert len(commits) == 3  # the lane's commit, its trailer commit, the version bump
    assert (seed_repo / "src" / "b.py").read_text() == "b = 1\n"


def test_the_recovery_works_after_a_rebase_onto_a_main_that_moved(
    seed_repo: Path, cfg: config.Config
) -> None:
    base = git(seed_repo, "rev-parse", "main")
    wt = Path(lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")[1]["worktree"])
    commit_file(wt, "src/a.py", "a = 1\n", "a: work")
    # far from the version line, so the rebase over main's version bump is clean
    _edit_then_put_back(wt, "pyproject.toml", (wt / "pyproject.toml").read_text() + "# mine\n")
    # main moves: another lane lands, with a version bump
    other = Path(lanes_json(seed_repo, "claim", "44", "b", "--agent", "bot-b")[1]["worktree"])
    commit_file(other, "src/b.py", "b = 1\n", "b: work")
    assert lanes_json(other, "fragment", "version", "patch")[0] == 0
    assert lanes_json(other, "submit")[0] == 0
    assert lanes_json(seed_repo, "integrate", "44")[0] == 0
    moved = git(seed_repo, "rev-parse", "main")
    git(wt, "rebase", "-q", "main")
    assert git(wt, "merge-base", "HEAD", "main") == moved != base

    rc, doc = lanes_json(wt, "submit")
    assert rc == 4 and [f["path"] for f in doc["files"]] == ["pyproject.toml"]
    assert doc["compared_with"] == moved
    run_restore(wt, doc["restore"])
    assert git(wt, "rev-list", "main..HEAD").split() == [git(wt, "rev-parse", "HEAD")]
    assert git(wt, "rev-parse", "HEAD~1") == moved
    assert (wt / "pyproject.toml").read_text() == (seed_repo / "pyproject.toml").read_text()
    assert version_at(wt, "HEAD")["pyproject.toml"] == "0.3.6"  # main's bump kept
    assert lanes_json(wt, "submit")[0] == 0
    rc, doc = lanes_json(seed_repo, "integrate", "44")
    assert rc == 0 and doc["integrated"] == ["a"]
    assert_main_is_clean(seed_repo, base)


def test_the_recovery_quotes_what_it_is_given(seed_repo: Path, tmp_path: Path) -> None:
    text = (seed_repo / "pyproject.toml").read_text()
    (seed_repo / "pyproject.toml").write_text(
        text.replace('stale_after = "30m"', 'stale_after = "30m"\nprotected = ["ops/*"]')
    )
    wt = Path(lanes_json(seed_repo, "claim", "44", "a", "--agent", "bot")[1]["worktree"])
    pwned = tmp_path / "pwned"
    subject = f'it\'s $(touch {pwned}) `touch {pwned}` "done"'
    commit_file(wt, "src/a.py", "a = 1\n", subject)
    commit_file(wt, "ops/it's a run book; rm -rf x.md", "steps\n", "add a run book")
    rc, doc = lanes_json(wt, "submit")
    assert rc == 4 and doc["files"][0]["path"] == "ops/it's a run book; rm -rf x.md"
    run_restore(wt, doc["restore"])
    assert not pwned.exists()
    assert not (wt / "ops").exists() and (wt / "src" / "a.py").exists()
    assert f"- {subject}" in git(wt, "log", "-1", "--format=%B")
    assert lanes_json(wt, "submit")[0] == 0


def test_an_empty_submit_is_taken_with_a_warning(seed_repo: Path) -> None:
    rc, doc = lanes_json(seed_repo, "claim", "44", "empty", "--agent", "bot")
    rc, doc = lanes_json(Path(doc["worktree"]), "submit")
    assert rc == 0 and doc["commits"] == 0
    assert any("will land nothing" in w for w in doc["warnings"])
