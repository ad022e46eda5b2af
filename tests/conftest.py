"""Shared fixtures: real git repositories in tmp_path, shaped like the seed's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

# tests/servers.py holds fixtures and asserts of its own: rewrite them, which must be
# asked before any test module imports it (here, the first module pytest loads).
pytest.register_assert_rewrite("tests.servers")

from lanes import config, scaffold  # noqa: E402

LANES = [sys.executable, "-m", "lanes"]


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Commits made by lanes or by tests in worktrees need an author; no global config."""
    monkeypatch.setenv("GIT_AUTHOR_NAME", "test agent")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "agent@lanes.invalid")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "test agent")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "agent@lanes.invalid")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)


@pytest.fixture
def worktree_root(tmp_path: Path) -> Path:
    root = tmp_path / "wt"
    root.mkdir(exist_ok=True)
    return root


# The coordination every test of the seed repository runs against (docs/testing.md): the
# inbox on this machine ("local", the default), or a git remote ("remote": the seed commits
# `remote = "origin"` and gets a bare `origin` beside it, on file://). `make test` runs the
# suite in both; tests of the inbox's own files are marked `local_coord`.
COORD = os.environ.get("LANES_TEST_COORD", "local")
if COORD not in ("local", "remote"):
    raise SystemExit(f"LANES_TEST_COORD must be local or remote, not {COORD!r}")


@pytest.fixture(params=[COORD])
def coord_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def seed_repo(tmp_path: Path, worktree_root: Path, coord_mode: str) -> Path:
    """The seed-shaped repository, configured through [tool.lanes] in pyproject.toml."""
    repo = scaffold.make_seed_repo(tmp_path / "jpcite", worktree_root)
    if coord_mode == "remote":
        with_origin(repo, tmp_path / "origin.git")
    return repo


def with_origin(repo: Path, bare: Path) -> Path:
    """Make `repo` coordinate through a bare `origin` (file://) holding its main."""
    py = repo / "pyproject.toml"
    py.write_text(
        py.read_text().replace('stale_after = "30m"', 'stale_after = "30m"\nremote = "origin"')
    )
    git(repo, "commit", "-qam", "coordinate through origin")
    git(repo.parent, "init", "-q", "--bare", str(bare))
    git(repo, "remote", "add", "origin", bare.as_uri())
    git(repo, "push", "-q", "origin", "main")
    return bare


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if COORD != "remote":
        return
    skip = pytest.mark.skip(reason="checks the inbox's own files: local coordination only")
    for item in items:
        if item.get_closest_marker("local_coord"):
            item.add_marker(skip)


@pytest.fixture
def cfg(seed_repo: Path) -> config.Config:
    return config.load(seed_repo)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit_file(worktree: Path, rel: str, text: str, message: str = "") -> str:
    path = worktree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    git(worktree, "add", rel)
    git(worktree, "commit", "-q", "-m", message or f"add {rel}")
    return git(worktree, "rev-parse", "HEAD")


def run_lanes(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user does: a real process, in `cwd`."""
    return subprocess.run(
        [*LANES, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def lanes_json(cwd: Path, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    proc = run_lanes(cwd, *args, "--json")
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def snapshot(*roots: Path, skip: Sequence[str] = (".git",)) -> dict[str, bytes | str]:
    """Every path under `roots` with its content (files) or kind: to prove nothing changed."""
    seen: dict[str, bytes | str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for name in dirnames:
                seen[os.path.join(dirpath, name)] = "dir"
            for name in filenames:
                p = os.path.join(dirpath, name)
                seen[p] = "link" if os.path.islink(p) else Path(p).read_bytes()
    return seen
