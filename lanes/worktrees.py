"""A lane's worktree: made without races, removed without losing work.

Parallel `git worktree add` fails now and then (a sibling's `commondir` is read while
being written; PRIMITIVES.md): the cheap registration (`add --no-checkout`) runs under one
repository-wide lock, the expensive checkout runs outside it, in parallel.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from lanes import git
from lanes.config import Config
from lanes.errors import BadInput, OperationalError


def check_sparse(patterns: Sequence[str]) -> list[str]:
    """Cone-mode patterns are directories inside the repository."""
    for pattern in patterns:
        parts = Path(pattern).parts
        if (
            not pattern.strip()
            or Path(pattern).is_absolute()
            or ".." in parts
            or "*" in pattern
            or pattern[0] in "!-"  # a negation or an option, not a directory
            or parts[0] == ".git"
        ):
            raise BadInput(
                "bad-sparse",
                f"invalid --sparse path {pattern!r}",
                hint="give a directory inside the repository, like src/api or docs",
            )
    return list(patterns)


def ensure_free(path: Path) -> None:
    """Refuse a path that exists in any form; never follow or remove what is there."""
    if os.path.lexists(path):
        kind = "symlink" if path.is_symlink() else "directory" if path.is_dir() else "file"
        raise OperationalError(
            "worktree-path-exists",
            f"a {kind} already exists at {path}, where the lane's worktree would go",
            hint="move it away yourself (lanes never touches it), or set worktree_root",
            path=str(path),
        )


def create(cfg: Config, path: Path, branch: str, base: str, sparse: Sequence[str]) -> bool:
    """Make the worktree on `branch` (new, from `base`, unless it exists). True if new branch."""
    from filelock import FileLock

    repo = cfg.main_checkout
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    new_branch = not git.branch_exists(repo, branch)
    with FileLock(str(cfg.state_dir / "worktree-add.lock")):
        ensure_free(path)
        try:
            git.worktree_add_no_checkout(repo, path, branch, base, new_branch=new_branch)
        except OperationalError:
            # A worktree deleted by hand (a reboot empties /tmp) stays registered until
            # pruned, and blocks its path and branch; prune and try once more.
            git.worktree_prune(repo)
            ensure_free(path)
            # The failed try may have made the branch already: still ours, not to make again.
            again = new_branch and not git.branch_exists(repo, branch)
            git.worktree_add_no_checkout(repo, path, branch, base, new_branch=again)
    try:
        if sparse:
            git.sparse_checkout_set(path, sparse)
        git.checkout_files(path)
    except OperationalError:
        remove(cfg, path, branch if new_branch else None)
        raise
    return new_branch


def remove(cfg: Config, path: Path, delete_branch: str | None = None) -> None:
    """Unregister and delete a worktree (and a branch it alone created). Idempotent."""
    repo = cfg.main_checkout
    if os.path.lexists(path) and not path.is_symlink():
        git.run(["worktree", "remove", "--force", "--force", str(path)], repo, check=False)
    git.worktree_prune(repo)
    if delete_branch:
        git.delete_branch(repo, delete_branch)


def save_uncommitted(worktree: Path, patch_path: Path) -> bool:
    """Write every uncommitted change (untracked files too) to `patch_path`. True if any.

    A worktree whose claimer was killed between registration and checkout has an empty
    index: it never held anyone's work, and its "changes" would only delete every file.
    """
    if not git.run(["ls-files", "-z"], worktree).stdout:
        return False
    if not git.status_porcelain(worktree).strip():
        return False
    patch = git.diff_with_untracked(worktree)
    tmp = patch_path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(patch.encode("utf-8", "surrogateescape"))  # git's bytes, exactly
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, patch_path)
    return True


IGNORED_FILE_LIMIT = 1 << 20  # bytes: a bigger ignored file is a build product, not notes
IGNORED_TOTAL_LIMIT = 32 << 20


def save_ignored(worktree: Path, archive_path: Path) -> tuple[int, list[str]]:
    """Put the git-ignored files (a .env, notes.log...) that a patch cannot hold into a
    tar.gz, each up to 1 MiB and 32 MiB in all, smallest first so that a few big build
    products never crowd out notes: (files saved, paths left out, too big or unreadable)."""
    import tarfile

    listed = git.run(["ls-files", "-z", "--others", "--ignored", "--exclude-standard"], worktree)
    sizes = {}
    for rel in _expanded(worktree, filter(None, listed.stdout.split("\0"))):
        try:
            sizes[rel] = (worktree / rel).lstat().st_size
        except OSError:
            continue  # gone already
    kept, skipped, total = [], [], 0
    for rel in sorted(sizes, key=lambda r: (sizes[r], r)):
        if sizes[rel] > IGNORED_FILE_LIMIT or total + sizes[rel] > IGNORED_TOTAL_LIMIT:
            skipped.append(rel)
        else:
            kept.append(rel)
            total += sizes[rel]
    saved = 0
    tmp = archive_path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for rel in sorted(kept):
                    # Read whole before anything is written, so that a file unreadable (a
                    # container's root-owned file) or changing size under us is left out
                    # whole: a short member would make the rest of the archive unreadable.
                    try:
                        info = tar.gettarinfo(str(worktree / rel), arcname=rel)
                        data = (worktree / rel).read_bytes() if info.isreg() else b""
                    except OSError:
                        skipped.append(rel)
                        continue
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)  # links stay
                    saved += 1
            raw.flush()
            os.fsync(raw.fileno())
        if saved:
            os.replace(tmp, archive_path)
    finally:
        tmp.unlink(missing_ok=True)
    return saved, sorted(skipped)


def _expanded(worktree: Path, listed: Iterable[str]) -> Iterator[str]:
    """The files under the folders git lists whole (a nested repository is listed as
    `vendor/lib/`), walked without following links; files and links as they are."""
    for rel in listed:
        if not rel.endswith("/"):
            yield rel
            continue
        for root, dirs, files in os.walk(worktree / rel):  # never follows a symlink
            here = Path(root).relative_to(worktree).as_posix()
            links = [d for d in dirs if (Path(root) / d).is_symlink()]
            for name in sorted(files + links):
                yield f"{here}/{name}"


def is_worktree(path: Path) -> bool:
    """A real directory (not a symlink) holding a .git file of a linked worktree."""
    return path.is_dir() and not path.is_symlink() and (path / ".git").is_file()


def kept_for(cfg: Config, path: Path, branch: str) -> bool:
    """Whether `path` is this repository's own worktree of `branch`, left by
    `lanes release --keep-worktree`: a new claim of the lane takes it over as it is."""
    if not is_worktree(path):
        return False  # not a worktree, or a symlink (worktree_root itself may be one: /tmp)
    try:
        where = git.locate(path)
    except OperationalError:
        return False  # a .git file that leads nowhere
    return where.branch == branch and where.common_dir.resolve() == cfg.common_dir.resolve()
