"""Saving a lane's work before its worktree goes: what is on disk, whatever the index says,
read back and checked; a save that cannot be made or checked removes nothing."""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from lanes import claims, config, saves
from lanes.errors import OperationalError
from tests.conftest import commit_file, git


def on_disk(root: Path) -> dict[str, bytes | str]:
    """Every file under `root` with its bytes (a link: its target), nested `.git` folders
    included; not the worktree's own `.git` file, which names its registration."""
    seen: dict[str, bytes | str] = {}
    for here, dirs, names in os.walk(root):
        for name in [*names, *(d for d in dirs if os.path.islink(os.path.join(here, d)))]:
            path = os.path.join(here, name)
            rel = os.path.relpath(path, root)
            if rel == ".git":
                continue
            if os.path.islink(path):
                seen[rel] = f"-> {os.readlink(path)}"
            elif stat.S_ISREG(os.lstat(path).st_mode):
                seen[rel] = Path(path).read_bytes()
            else:
                seen[rel] = "special"  # a fifo: never opened
    return seen


def restored(
    cfg: config.Config, patch: str | Path | None, archive: str | Path | None, at: str, dest: Path
) -> Path:
    """A fresh worktree at `at` with the save put back: the patch applied, the archive
    extracted, as docs/lanes.md tells a user to do it."""
    git(cfg.main_checkout, "worktree", "add", "-q", "--detach", str(dest), at)
    if patch:
        git(dest, "apply", "--binary", str(patch))
    if archive:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="tar")
    return dest


def scratch_left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(f"{saves.SCRATCH}*"))


def _lane(cfg: config.Config, lane: str = "a", **kw: list[str]) -> tuple[Path, Path]:
    result = claims.claim(cfg, "44", lane, "agent-1", **kw)
    return Path(result.worktree), Path(result.claim_dir)


def test_what_is_on_disk_is_saved_whatever_the_index_says(
    cfg: config.Config, tmp_path: Path
) -> None:
    wt, claim_dir = _lane(cfg)
    commit_file(wt, "src/committed.py", "c = 1\n")
    (wt / "src/app.py").write_text("edited\n")
    (wt / "scripts/schema_guard.py").unlink()
    (wt / "new/deep").mkdir(parents=True)
    (wt / "new/deep/file.bin").write_bytes(bytes(range(256)) * 3)
    os.symlink("../src/app.py", wt / "new/link")
    git(wt, "rm", "-r", "-q", "--cached", ".")  # the index now says: every file deleted
    index = Path(git(wt, "rev-parse", "--git-path", "index"))
    index = index if index.is_absolute() else wt / index
    own_index, status = index.read_bytes(), git(wt, "status", "--porcelain")
    before = on_disk(wt)

    saved = saves.save(wt, claim_dir, "release")

    assert saved.patch == claim_dir / "release-uncommitted.patch" and saved.archive is None
    assert saved.against == git(wt, "rev-parse", "HEAD")
    assert index.read_bytes() == own_index and git(wt, "status", "--porcelain") == status
    back = restored(cfg, saved.patch, saved.archive, "lanes/44/a", tmp_path / "back")
    assert on_disk(back) == before
    assert scratch_left(claim_dir) == []


def test_nested_repositories_are_saved_whole_with_their_commits(
    cfg: config.Config, tmp_path: Path
) -> None:
    wt, claim_dir = _lane(cfg)
    (wt / "tools/lib").mkdir(parents=True)
    git(wt / "tools/lib", "init", "-q")
    sha = commit_file(wt / "tools/lib", "lib.py", "hours of it\n")
    (wt / "tools/lib/draft.py").write_text("not committed there\n")
    (wt / "fresh").mkdir()
    git(wt / "fresh", "init", "-q")  # no commit yet: git add would fail on it
    (wt / "fresh/notes.md").write_text("first thoughts\n")
    git(wt / "src", "init", "-q")  # a nested repository over tracked files
    (wt / "src/app.py").write_text("changed under a nested .git\n")
    before = on_disk(wt)

    saved = saves.save(wt, claim_dir, "release")

    assert saved.nested == ("fresh", "src", "tools/lib")
    assert saved.archive is not None
    back = restored(cfg, saved.patch, saved.archive, "lanes/44/a", tmp_path / "back")
    assert on_disk(back) == before
    assert git(back / "tools/lib", "rev-parse", "HEAD") == sha  # its commits came back


def test_a_sparse_worktree_is_saved_without_deleting_what_it_never_checked_out(
    cfg: config.Config, tmp_path: Path
) -> None:
    wt, claim_dir = _lane(cfg, sparse=["src"])
    assert not (wt / "scripts").exists()
    (wt / "src/app.py").write_text("edited\n")
    (wt / "top.txt").write_text("new at the top\n")
    (wt / "docs").mkdir()
    (wt / "docs/outside.md").write_text("outside the cone\n")
    git(wt, "rm", "-r", "-q", "--cached", ".")

    saved = saves.save(wt, claim_dir, "release")

    assert saved.patch is not None
    changed = git(wt, "apply", "--numstat", str(saved.patch)).splitlines()
    assert sorted(line.split("\t")[2] for line in changed) == [
        "docs/outside.md",
        "src/app.py",
        "top.txt",
    ]
    back = restored(cfg, saved.patch, None, "lanes/44/a", tmp_path / "back")
    assert (back / "src/app.py").read_text() == "edited\n"
    assert (back / "scripts/schema_guard.py").is_file()  # never deleted


def test_names_that_are_not_utf8_links_and_fifos(cfg: config.Config, tmp_path: Path) -> None:
    wt, claim_dir = _lane(cfg)
    (wt / ".gitignore").write_text("*.log\n")
    (wt / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name\n")
    (wt / os.fsdecode(b"notes-\xff.log")).write_bytes(b"ignored, odd name\n")
    os.symlink("/nowhere", wt / "dangling.log")
    os.mkfifo(wt / "pipe")
    before = on_disk(wt)

    saved = saves.save(wt, claim_dir, "release")

    assert saved.not_saved == ("pipe",)  # nothing in it to save, and never waited on
    back = restored(cfg, saved.patch, saved.archive, "lanes/44/a", tmp_path / "back")
    assert on_disk(back) == {k: v for k, v in before.items() if k != "pipe"}


def test_a_worktree_never_filled_saves_nothing(cfg: config.Config) -> None:
    wt, claim_dir = _lane(cfg)
    git(cfg.main_checkout, "worktree", "remove", "--force", str(wt))
    git(cfg.main_checkout, "worktree", "add", "-q", "--no-checkout", str(wt), "lanes/44/a")
    assert saves.save(wt, claim_dir, "reap") == saves.Saved()


def test_commits_no_branch_holds_refuse_the_save(cfg: config.Config) -> None:
    wt, claim_dir = _lane(cfg)
    base = git(wt, "rev-parse", "HEAD")
    git(wt, "switch", "-q", "--detach")
    commit_file(wt, "src/detached.py", "only HEAD has me\n")
    with pytest.raises(OperationalError) as err:
        saves.save(wt, claim_dir, "release")
    assert err.value.code == "save-failed" and "on no branch" in err.value.message
    # Detached where a branch already holds every commit is fine: saved against HEAD.
    git(wt, "switch", "-q", "--detach", base)
    (wt / "src/app.py").write_text("edited\n")
    assert saves.save(wt, claim_dir, "release").against == base


@pytest.mark.parametrize("what", ["patch", "tar.gz"])
def test_a_save_that_does_not_read_back_keeps_its_copy_and_removes_nothing(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    wt, claim_dir = _lane(cfg)
    (wt / ".gitignore").write_text("*.log\n")
    (wt / "src/app.py").write_text("edited\n" * 200)
    (wt / "notes.log").write_text("ignored notes\n" * 200)
    before = on_disk(wt)

    def disk_loses_bytes(name: str) -> None:  # what a failing disk or a bug would do
        if name == "save-written":
            for written in claim_dir.glob(f"{saves.SCRATCH}*.{what}.tmp"):
                data = bytearray(written.read_bytes())
                data[len(data) // 2] ^= 0xFF
                written.write_bytes(bytes(data))

    monkeypatch.setattr(saves, "failpoint", disk_loses_bytes)
    with pytest.raises(OperationalError) as err:
        saves.save(wt, claim_dir, "release")

    assert err.value.code == "save-check-failed"
    kept = [Path(p) for p in err.value.extra["partial_save"]]
    assert kept and all(p.is_file() and saves.UNVERIFIED in p.name for p in kept)
    assert not (claim_dir / "release-uncommitted.patch").exists()
    assert on_disk(wt) == before
    assert scratch_left(claim_dir) == []


def test_a_save_that_fails_leaves_no_scratch_files(
    cfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(saves, "WHOLE_LIMIT", 10)
    wt, claim_dir = _lane(cfg)
    (wt / "src/app.py").write_text("edited\n")
    (wt / "vendored").mkdir()
    git(wt / "vendored", "init", "-q")
    with pytest.raises(OperationalError) as err:
        saves.save(wt, claim_dir, "release")
    assert err.value.code == "save-failed" and "vendored" in err.value.message
    assert scratch_left(claim_dir) == [] and sorted(p.name for p in claim_dir.iterdir()) == [
        "claim.json",
        "fragments",
        "heartbeat",
    ]


def test_a_submodule_with_commits_only_in_the_worktrees_git_dir_refuses_the_save(
    cfg: config.Config, tmp_path: Path
) -> None:
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git(upstream, "init", "-q", "-b", "main")
    commit_file(upstream, "lib.py", "upstream\n")
    wt, claim_dir = _lane(cfg)
    git(wt, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(upstream), "sub")
    assert "worktrees" in (wt / "sub/.git").read_text()  # its repository: pruned with it
    assert saves.save(wt, claim_dir, "release").nested == ("sub",)  # a clone: nothing lost
    commit_file(wt / "sub", "mine.py", "committed in the submodule only\n")
    with pytest.raises(OperationalError) as err:
        saves.save(wt, claim_dir, "release")
    assert err.value.code == "save-failed" and "submodule sub" in err.value.message


def test_files_git_refuses_to_index_go_whole_into_the_archive(
    cfg: config.Config, tmp_path: Path
) -> None:
    wt, claim_dir = _lane(cfg)
    (wt / "git~1").write_text("a name git refuses (NTFS's short name of .git)\n")
    (wt / "x/.GIT").mkdir(parents=True)
    (wt / "x/.GIT/notes").write_text("a folder git refuses\n")
    (wt / "src/app.py").write_text("edited\n")
    before = on_disk(wt)
    saved = saves.save(wt, claim_dir, "release")
    assert saved.archive is not None
    with tarfile.open(saved.archive) as tar:
        assert sorted(tar.getnames()) == ["git~1", "x/.GIT/notes"]
    back = restored(cfg, saved.patch, saved.archive, "lanes/44/a", tmp_path / "back")
    assert on_disk(back) == before
