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


# Where a pass can be killed while it moves main: locally update-ref's compare-and-swap,
# then the rows ("cas": main moved, no row yet; "ledger": after a row); on a remote main and
# its rows go in one atomic push ("remote-land-push": just before, "remote-landed": after).
LANDING_POINTS = ("cas", "ledger") if COORD == "local" else ("remote-land-push", "remote-landed")
MAIN_MOVED = LANDING_POINTS[0] if COORD == "local" else LANDING_POINTS[1]


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


def origin_of(repo: Path) -> Path | None:
    """The bare repository `repo` coordinates through (`remote = "origin"` on file://), or
    None when it coordinates on this machine."""
    if not config.load(repo).settings.remote:
        return None
    url = git(repo, "remote", "get-url", "origin")
    assert url.startswith("file://"), url
    return Path(url.removeprefix("file://"))


def main_of(repo: Path) -> str:
    """main's tip where the truth lives: origin's on a remote (a pass killed after its push
    has moved it there, not yet here), else this repository's."""
    bare = origin_of(repo)
    return git(bare, "rev-parse", "main") if bare else git(repo, "rev-parse", "main")


def publish(repo: Path, branch: str = "main") -> None:
    """Push `branch` to origin when `repo` coordinates through it: a commit made on main in
    the main checkout is then main where the truth lives, as a user would push it. Locally
    main here is the truth, and nothing is done."""
    if origin_of(repo) is not None:
        git(repo, "push", "-q", "origin", f"{branch}:{branch}")


def go_stale(
    cfg: config.Config, wave: str, lane: str, when: int = 1, bare: Path | None = None
) -> None:
    """Make the lane's last heartbeat be at epoch `when`, where the truth keeps it: locally
    the heartbeat file's mtime; on a remote (`bare`: the server's repository, when it is
    not served on file://) the committer time of the claim ref's tip, so the server holds a
    child commit (same tree, same record) dated then, as if its holder had stopped beating
    at that time."""
    bare = bare or origin_of(cfg.main_checkout)
    if bare is None:
        os.utime(cfg.claim_dir(wave, lane) / "heartbeat", (when, when))
        return
    ref = f"refs/lanes/{wave}/claims/{lane}"
    tip = git(bare, "rev-parse", ref)
    stamp = {"GIT_COMMITTER_DATE": f"@{when} +0000", "GIT_AUTHOR_DATE": f"@{when} +0000"}
    old = subprocess.run(
        ["git", "commit-tree", f"{tip}^{{tree}}", "-p", tip, "-m", "lanes heartbeat (aged)"],
        cwd=bare,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **stamp},
    ).stdout.strip()
    git(bare, "update-ref", ref, old, tip)


def settle(repo: Path, *waves: str) -> None:
    """On a remote, bring here what any read of these waves brings (the claims' objects,
    AGENT_LEDGER.md rendered: caches of the remote, docs/remote.md), so that a snapshot
    taken now and compared after a command that only reads compares everything; locally
    nothing (the inbox is the truth, a read changes nothing)."""
    if origin_of(repo) is None:
        return
    from lanes import coord

    c = coord.for_config(config.load(repo))
    for wave in waves:
        c.holders(wave)
        c.ledger(wave).events()


def stage(cfg: config.Config, wave: str) -> None:
    """What a pass does before it reads its plan (integrator/integrate.py): on a remote, the
    lane branches and the claims' fragments brought here; locally nothing (they are here)."""
    from lanes import coord

    coord.for_config(cfg).stage_wave(wave)


def hand_submit(cfg: config.Config, wave: str, lane: str, files: dict[str, bytes]) -> None:
    """Hand a lane over with fragment files added as they are, past `lanes submit`'s
    checks (a fragment written by hand): the files go where the integrator reads them (the
    claim dir here; on a remote the claim commit, with the lane's other fragments, as a
    hand push would put them), then the `submit` row is written directly."""
    from lanes import claims, coord

    folder = cfg.claim_dir(wave, lane) / claims.FRAGMENTS
    for name, data in files.items():
        (folder / name).write_bytes(data)
    _, record, holder = claims.held_by(cfg, wave, lane)
    frags = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
    coord.for_config(cfg).submit(wave, lane, holder, record.branch, frags)
    head = git(cfg.main_checkout, "rev-parse", record.branch)
    claims.ledger(cfg, wave).append("submit", lane, record.agent, head=head)


# Modules that build their own machines (several clones of one server): they run the same
# whatever the seed's coordination, so the remote run leaves them to the local one.
OWN_TOPOLOGY = {
    "test_coord",
    "test_remote",
    "test_remote_faults",
    "test_remote_integrate",
    "test_servers",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With LANES_TEST_COORD=remote: the tests whose coordination is the seed's (they use
    `seed_repo`, hence `coord_mode`) run; the others would run exactly as in the local run
    and are deselected, said in the summary; so are `local_coord` tests (the inbox's own
    files), which the local run runs: nothing is skipped."""
    if COORD != "remote":
        return
    keep, left = [], []
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        same_both_ways = "coord_mode" not in getattr(item, "fixturenames", ())
        if not os.environ.get("LANES_TEST_COORD_ALL") and (
            same_both_ways or module in OWN_TOPOLOGY
        ):
            left.append(item)
            continue
        if item.get_closest_marker("local_coord"):  # the inbox's own files: the local run's
            left.append(item)
            continue
        keep.append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


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
