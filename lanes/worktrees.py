"""A lane's worktree: made without races, removed without losing work.

Parallel `git worktree add` fails now and then (a sibling's `commondir` is read while
being written; PRIMITIVES.md): the cheap registration (`add --no-checkout`) runs under one
repository-wide lock, the expensive checkout runs outside it, in parallel.

A worktree is removed (after lanes.saves has saved and checked its work) by moving it away
in one rename and deleting it there: it is whole at its path or gone from it, never
half-deleted where the next save would take what is left for the lane's work.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path

from lanes import git
from lanes.config import Config
from lanes.errors import BadInput, OperationalError
from lanes.failpoint import failpoint


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


TRASH = ".lanes-trash-"  # a worktree moved away to be deleted: {root}/{TRASH}{name}-{id}


def remove(cfg: Config, path: Path, delete_branch: str | None = None) -> bool:
    """Unregister and delete a worktree of this repository (and a branch it alone created).
    Idempotent; True if a worktree was removed. Anything else at `path` is never touched.

    The directory is first renamed away in one step: a kill while it is being deleted leaves
    it gone from its path (gc deletes the rest), never half there for a later save to take
    for the lane's work.
    """
    repo = cfg.main_checkout
    removed = False
    if is_ours(cfg, path):
        git.run(["worktree", "unlock", str(path)], repo, check=False)  # prune keeps locked ones
        trash = path.with_name(f"{TRASH}{path.name}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, trash)
        except OSError as exc:
            raise OperationalError(
                "worktree-not-removed",
                f"could not move the worktree {path} away to delete it: {exc}",
                hint="fix what the system says (a mount point, permissions on its folder), "
                "then run the command again; its work is saved and the worktree untouched",
                worktree=str(path),
            ) from exc
        failpoint("worktree-moved")
        git.worktree_prune(repo)  # its registration now points nowhere
        shutil.rmtree(trash, ignore_errors=True)
        removed = True
    git.worktree_prune(repo)
    if delete_branch:
        git.delete_branch(repo, delete_branch)
    return removed


def sweep_trash(cfg: Config) -> None:
    """Delete the worktrees a killed remover had moved away (each saved and checked first)."""
    root = Path(cfg.settings.worktree_root)
    for leftover in root.glob(f"{TRASH}{cfg.project}-*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)


def is_ours(cfg: Config, path: Path) -> bool:
    """A worktree this repository registered at `path` (a claim record may name any path)."""
    if not is_worktree(path):
        return False
    real = path.resolve()
    return any(p.resolve() == real for p in git.worktree_paths(cfg.main_checkout))


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
