"""A lane's work, saved before its worktree is removed, and checked before anyone trusts it.

Everything on the worktree's disk is saved, whatever its index says (an agent may have run
`git rm -r --cached .`): a patch against HEAD built in a scratch index from the files
themselves, and a tar.gz of what no patch holds (git-ignored files, nested repositories with
their `.git`). Both are written and fsynced under scratch names, read back and checked (the
patch rebuilds the disk's tree, the archive holds every member, every file on disk is in one
of them), and only then given their names. A save that cannot be made or checked raises, and
the caller removes nothing.
"""

from __future__ import annotations

import os
import posixpath
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from lanes import git
from lanes.errors import OperationalError
from lanes.failpoint import failpoint

if TYPE_CHECKING:
    import tarfile  # imported where it is used: every command imports this module

IGNORED_FILE_LIMIT = 1 << 20  # bytes: a bigger ignored file is a build product, not notes
IGNORED_TOTAL_LIMIT = 32 << 20
WHOLE_LIMIT = 256 << 20  # bytes: nested repositories, saved whole or the save fails
SCRATCH = ".save-"  # a save's temporaries in the claim dir; a later save drops a kill's
UNVERIFIED = ".unverified"  # a save that failed its check, kept to look at

# The save reads the disk, never the worktree's own index: a fresh index from HEAD, and
# none of git's shortcuts that trust a cache instead of the files.
_FRESH = [
    *("-c", "core.fsmonitor=false"),
    *("-c", "core.untrackedCache=false"),
    *("-c", "index.sparse=false"),
]


@dataclass(frozen=True)
class Saved:
    """What a save left in the claim dir, read back and checked against the disk."""

    patch: Path | None = None  # every change on disk against `against`, untracked files too
    archive: Path | None = None  # git-ignored files and nested repositories, as a tar.gz
    nested: tuple[str, ...] = ()  # nested repositories, whole (.git included) in the archive
    not_saved: tuple[str, ...] = ()  # ignored files too big or unreadable; sockets, fifos
    against: str | None = None  # the commit checked out (HEAD), which the patch applies to


@dataclass
class _Disk:
    """What is on a worktree's disk, walked without following links."""

    files: set[str] = field(default_factory=set)  # regular files and links, as git holds them
    nested: dict[str, list[str]] = field(default_factory=dict)  # repository -> its files
    special: list[str] = field(default_factory=list)  # sockets, fifos, devices: no content


@dataclass
class _Draft:
    """A save written to scratch files, before its check."""

    head: str
    tree: str  # HEAD with every change on disk, as git holds it
    tracked: set[str]  # the paths of `tree`
    patch: Path | None
    archive: Path | None
    members: dict[str, tuple[bytes, int, str]]  # archive member -> (type, size, link)
    nested: list[str]
    not_saved: list[str]


def save(worktree: Path, claim_dir: Path, why: str) -> Saved:
    """Save everything on the worktree's disk, whatever its index says, into `claim_dir`:
    `{why}-uncommitted.patch` against HEAD (untracked files too) and `{why}-ignored.tar.gz`
    (ignored files, nested repositories whole); then read both back and check them.

    Raises `save-failed` or `save-check-failed` when the work cannot be saved whole; the
    worktree is never touched, so the caller removes nothing.
    """
    drop_scratch(claim_dir)
    scratch = claim_dir / f"{SCRATCH}{uuid.uuid4().hex[:12]}"
    try:
        draft = _draft(worktree, scratch)
        if draft is None:
            return Saved()  # nothing on disk: a worktree never filled holds no one's work
        failpoint("save-written")
        problems = _check(worktree, draft, scratch)
        if problems:
            raise _unverified(worktree, draft, claim_dir, why, problems)
        saved = _publish(draft, claim_dir, why)
        failpoint("save-checked")
        return saved
    except OSError as exc:
        raise _failed(worktree, str(exc)) from exc
    except OperationalError as exc:
        if exc.code != "git-failed":
            raise
        raise _failed(worktree, exc.message) from exc
    finally:
        for leftover in claim_dir.glob(f"{scratch.name}*"):
            leftover.unlink(missing_ok=True)


def drop_scratch(claim_dir: Path) -> None:
    """Remove what an earlier save left: a killed one's scratch files, a failed one's
    unverified copies (the worktree is still whole, and this save supersedes them)."""
    for leftover in [*claim_dir.glob(f"{SCRATCH}*"), *claim_dir.glob(f"*{UNVERIFIED}.*")]:
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink(missing_ok=True)


def _failed(worktree: Path, why: str) -> OperationalError:
    return OperationalError(
        "save-failed",
        f"could not save the work in {worktree}, so nothing was removed: {why}",
        hint="fix what the message names (space, permissions, a broken file), then run it "
        "again; the worktree is untouched",
        worktree=str(worktree),
    )


def _draft(worktree: Path, scratch: Path) -> _Draft | None:
    """Write the patch and the archive to scratch files; None if the disk holds nothing."""
    head = _head(worktree)
    disk = _scan(worktree)
    if not disk.files and not disk.nested:
        return None
    _no_commits_in_git_dir(worktree, disk)
    tree, tracked, ignored = _index_disk(worktree, disk, head, scratch)
    patch = None
    if tree != git.out(["rev-parse", f"{head}^{{tree}}"], worktree):
        diff = git.run(["diff-tree", "-r", "-p", "--binary", "--no-renames", head, tree], worktree)
        data = diff.stdout.encode("utf-8", "surrogateescape")  # git's bytes, exactly
        patch = _write_synced(_tmp(scratch, "patch"), data)
    # Whole or not at all: a nested repository, and whatever git would not take into the
    # tree (not ignored, so it is work). Ignored files within their limits.
    whole = [f for files in disk.nested.values() for f in files]
    whole += sorted(disk.files - tracked - ignored)
    _fits_whole(worktree, whole, disk)
    kept, skipped = _within_limits(worktree, sorted((disk.files & ignored) - tracked))
    archive, members = None, dict[str, tuple[bytes, int, str]]()
    if whole or kept:
        archive = _tmp(scratch, "tar.gz")
        members, unreadable = _write_archive(worktree, whole, kept, archive)
        skipped += unreadable
    not_saved = sorted(skipped) + sorted(disk.special)
    return _Draft(head, tree, tracked, patch, archive, members, sorted(disk.nested), not_saved)


def _index_disk(
    worktree: Path, disk: _Disk, head: str, scratch: Path
) -> tuple[str, set[str], set[str]]:
    """The disk as git would commit it, in a scratch index that starts from HEAD: (its
    tree, the paths in it, the ignored files git left out)."""
    index = {"GIT_INDEX_FILE": str(_tmp(scratch, "index"))}

    def in_index(*args: str) -> str:
        return git.run([*_FRESH, *args], worktree, env=index).stdout

    in_index("read-tree", head)
    # A nested repository would become a gitlink (its files and commits lost), or fail the
    # add when it has no commit yet: it goes whole into the archive instead. (An ignored one
    # git leaves alone, and refuses to be named.)
    shut = [f":(exclude,literal){r}" for r in _not_ignored(worktree, index, list(disk.nested))]
    # A file git refuses (`git~1`, a `.GIT` folder) must not stop the others: left out of
    # the tree, it goes whole into the archive. Exit 1 says so; anything more is fatal.
    add = ["add", "--all", "--sparse", "--ignore-errors", "--", ".", *shut]
    added = git.run([*_FRESH, *add], worktree, env=index, check=False)
    if added.returncode not in (0, 1):
        raise _failed(worktree, f"git add failed: {added.stderr}")
    _keep_outside_cone(worktree, index, head, scratch)
    tree = in_index("write-tree").strip()
    tracked = set(_nul(in_index("ls-files", "-z")))
    listed = in_index("ls-files", "-z", "--others", "--ignored", "--exclude-standard")
    return tree, tracked, {rel for rel in _nul(listed) if not rel.endswith("/")}


def _not_ignored(worktree: Path, index: dict[str, str], folders: list[str]) -> list[str]:
    """One question a folder (nested repositories are few); asked by exit code, since only
    --stdin takes names that are not UTF-8."""
    ask, env = ["check-ignore", "-q", "--"], {**index, "GIT_LITERAL_PATHSPECS": "1"}
    return [
        f for f in folders if git.run([*ask, f + "/"], worktree, env=env, check=False).returncode
    ]


def _head(worktree: Path) -> str:
    """The commit checked out. Refused when the worktree holds commits no branch has (a
    detached HEAD, a rebase in progress): removing the worktree would lose them."""
    head = git.rev_parse(worktree, "HEAD")
    if head is None:
        raise _failed(worktree, "its HEAD names no commit")
    alone = git.out(
        ["rev-list", "-n", "1", head, "--not", "--branches", "--tags", "--remotes"], worktree
    )
    if alone:
        raise OperationalError(
            "save-failed",
            f"{worktree} is at {head[:12]}, with commits that are on no branch (a detached "
            "HEAD, a rebase in progress): removing it would lose them, so nothing was removed",
            hint=f"put them on a branch (git -C {worktree} switch -c <name>, or finish the "
            "rebase), then run the command again",
            worktree=str(worktree),
        )
    return head


def _no_commits_in_git_dir(worktree: Path, disk: _Disk) -> None:
    """A submodule of a linked worktree keeps its repository in the worktree's own git dir
    (`.git/worktrees/<id>/modules/`), which the removal prunes, and the archive holds only
    its `.git` file: refused while it has commits that its remote does not."""
    own = Path(git.out(["rev-parse", "--absolute-git-dir"], worktree)).resolve()
    for rel in disk.nested:
        gitfile = worktree / rel / ".git"
        if gitfile.is_symlink() or not gitfile.is_file():
            continue  # a .git folder: saved whole with the rest
        pointer = gitfile.read_text(encoding="utf-8", errors="replace").partition("gitdir:")[2]
        where = (worktree / rel / pointer.strip()).resolve()
        if not where.is_relative_to(own):
            continue  # elsewhere, and the removal leaves it there
        mine = ["rev-list", "-n", "1", "HEAD", "--branches", "--not", "--remotes", "--tags"]
        alone = git.run(mine, worktree / rel, check=False)
        if alone.returncode != 0 or alone.stdout.strip():
            raise OperationalError(
                "save-failed",
                f"{worktree}: the submodule {rel} has commits its remote does not have, in a "
                "repository inside the worktree's git dir, which removing it would delete; "
                "nothing was removed",
                hint=f"push them (git -C {worktree / rel} push), or copy that repository out, "
                "then run the command again",
                worktree=str(worktree),
            )


def _scan(worktree: Path) -> _Disk:
    """Every file on the worktree's disk. A folder holding a `.git` is a nested repository,
    taken whole (its `.git` included); the worktree's own `.git` file is git's, not work."""
    disk = _Disk()
    for here, dirs, names in _walk(worktree):
        rel = _rel(worktree, here)
        if rel and ".git" in (*dirs, *names):
            disk.nested[rel] = list(_files_under(worktree, Path(here), disk))
            dirs.clear()
            continue
        if not rel:
            dirs[:] = [d for d in dirs if d != ".git"]
            names = [n for n in names if n != ".git"]
        for name in _entries(here, dirs, names):
            _sort_into(disk, worktree, posixpath.join(rel, name) if rel else name)
    return disk


def _files_under(worktree: Path, top: Path, disk: _Disk) -> Iterator[str]:
    for here, dirs, names in _walk(top):
        rel = _rel(worktree, here)
        for name in _entries(here, dirs, names):
            path = posixpath.join(rel, name)
            kind = _kind(worktree / path)
            if kind == "file":
                yield path
            elif kind == "special":
                disk.special.append(path)  # a daemon's socket in .git, say


def _walk(top: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk that never follows a link and never skips a folder it cannot read."""

    def unreadable(exc: OSError) -> None:
        raise exc

    yield from os.walk(top, onerror=unreadable)


def _rel(worktree: Path, here: str) -> str:
    rel = Path(here).relative_to(worktree).as_posix()
    return "" if rel == "." else rel


def _entries(here: str, dirs: list[str], names: list[str]) -> list[str]:
    """The names of a folder that are files to git: files, and links (to folders too)."""
    return sorted([*names, *(d for d in dirs if os.path.islink(os.path.join(here, d)))])


def _kind(path: Path) -> str:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return "gone"
    return "file" if stat.S_ISREG(mode) or stat.S_ISLNK(mode) else "special"


def _sort_into(disk: _Disk, worktree: Path, rel: str) -> None:
    kind = _kind(worktree / rel)
    if kind == "file":
        disk.files.add(rel)
    elif kind == "special":
        disk.special.append(rel)


def _nul(text: str) -> list[str]:
    return [p for p in text.split("\0") if p]


def _tmp(scratch: Path, what: str) -> Path:
    return scratch.with_name(f"{scratch.name}.{what}.tmp")


def _keep_outside_cone(worktree: Path, index: dict[str, str], head: str, scratch: Path) -> None:
    """In a sparse worktree the files outside its cone are not on disk, yet not deleted:
    put them back from HEAD, or the patch would delete every one of them."""
    cone = _cone(worktree)
    if cone is None:
        return
    deleted = git.run(
        ["diff-index", "--cached", "--name-only", "-z", "--diff-filter=D", head],
        worktree,
        env=index,
    ).stdout
    outside = [p for p in _nul(deleted) if not _in_cone(p, cone)]
    if not outside:
        return
    listing = _tmp(scratch, "paths")
    listing.write_bytes(b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in outside))
    literal = {**index, "GIT_LITERAL_PATHSPECS": "1"}
    args = ["reset", "-q", head, f"--pathspec-from-file={listing}", "--pathspec-file-nul"]
    git.run([*_FRESH, *args], worktree, env=literal)


def _cone(worktree: Path) -> list[str] | None:
    """The folders of a cone-mode sparse checkout; None when the worktree is not sparse
    (or not in cone mode, or names a folder git quotes: then absent files count as deleted)."""

    def setting(key: str) -> str:
        return git.run(["config", "--bool", key], worktree, check=False).stdout.strip()

    if setting("core.sparseCheckout") != "true" or setting("core.sparseCheckoutCone") != "true":
        return None
    listed = git.run(
        ["-c", "core.quotePath=false", "sparse-checkout", "list"], worktree, check=False
    )
    folders = listed.stdout.splitlines()
    if listed.returncode != 0 or any(f.startswith('"') for f in folders):
        return None
    return folders


def _in_cone(path: str, cone: list[str]) -> bool:
    """Cone mode checks out the top folder's files, each cone folder whole, and the files
    directly in every folder above a cone folder."""
    parent = posixpath.dirname(path)
    return not parent or any(
        parent == d or parent.startswith(d + "/") or d.startswith(parent + "/") for d in cone
    )


def _fits_whole(worktree: Path, whole: list[str], disk: _Disk) -> None:
    size = sum(_size(worktree / rel) for rel in whole)
    if size > WHOLE_LIMIT:
        raise OperationalError(
            "save-failed",
            f"{worktree} holds {size >> 20} MiB that can only be saved whole (nested "
            f"repositories: {', '.join(disk.nested) or 'none'}), more than lanes keeps "
            f"({WHOLE_LIMIT >> 20} MiB), so nothing was removed",
            hint="move them out of the worktree (or delete them yourself), then run the "
            "command again",
            worktree=str(worktree),
        )


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def _within_limits(worktree: Path, ignored: list[str]) -> tuple[list[str], list[str]]:
    """The ignored files a patch cannot hold, each up to 1 MiB and 32 MiB in all, smallest
    first so that a few big build products never crowd out notes: (kept, left out)."""
    sizes = {rel: _size(worktree / rel) for rel in ignored}
    kept, skipped, total = [], [], 0
    for rel in sorted(sizes, key=lambda r: (sizes[r], r)):
        if sizes[rel] > IGNORED_FILE_LIMIT or total + sizes[rel] > IGNORED_TOTAL_LIMIT:
            skipped.append(rel)
        else:
            kept.append(rel)
            total += sizes[rel]
    return kept, skipped


def _write_archive(
    worktree: Path, whole: list[str], ignored: list[str], path: Path
) -> tuple[dict[str, tuple[bytes, int, str]], list[str]]:
    """The tar.gz, fsynced: each of `whole` in it or the save fails; each ignored file read
    whole first, or left out if unreadable (a short member would spoil the rest). Returns
    (what each member is, the ignored files left out). Links are kept as links."""
    import io
    import tarfile

    members: dict[str, tuple[bytes, int, str]] = {}
    left_out = []
    with open(path, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for rel in sorted(whole):
                info = _info(tar, worktree, rel)
                if info.isreg():
                    with _open(worktree / rel) as fh:
                        info.size = os.fstat(fh.fileno()).st_size
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
                members[rel] = (info.type, info.size, info.linkname)
            for rel in sorted(ignored):
                try:
                    info = _info(tar, worktree, rel)
                    data = b""
                    if info.isreg():
                        with _open(worktree / rel) as fh:
                            data = fh.read()
                except OSError:
                    left_out.append(rel)  # a container's root-owned file, say
                    continue
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
                members[rel] = (info.type, info.size, info.linkname)
        raw.flush()
        os.fsync(raw.fileno())
    return members, left_out


def _info(tar: tarfile.TarFile, worktree: Path, rel: str) -> tarfile.TarInfo:
    info = tar.gettarinfo(str(worktree / rel), arcname=rel)  # lstat: a link stays a link
    if info is None:
        raise OSError(f"{rel} is not a file")  # turned into a socket since the walk
    return info


def _open(path: Path) -> BinaryIO:
    """Open for reading, never through a link, never waiting on a fifo."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb")


def _write_synced(path: Path, data: bytes) -> Path:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _check(worktree: Path, draft: _Draft, scratch: Path) -> list[str]:
    """What the save would lose, read back from the files: nothing when the patch, applied
    to HEAD, rebuilds the tree taken from the disk; the archive reads back whole with every
    member; and every file on disk now is in the tree, the archive or the list left out."""
    import tarfile
    import zlib

    problems = []
    if draft.patch is not None:
        index = {"GIT_INDEX_FILE": str(_tmp(scratch, "check"))}
        git.run([*_FRESH, "read-tree", draft.head], worktree, env=index)
        args = ["apply", "--cached", "--binary", "--whitespace=nowarn", str(draft.patch)]
        applied = git.run([*_FRESH, *args], worktree, env=index, check=False)
        rebuilt = git.run([*_FRESH, "write-tree"], worktree, env=index, check=False)
        if applied.returncode != 0 or rebuilt.stdout.strip() != draft.tree:
            problems.append(f"the patch does not rebuild what is on disk {applied.stderr}".strip())
    if draft.archive is not None:
        try:
            members = _members(draft.archive)
        except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
            problems.append(f"the archive does not read back: {exc}")
        else:
            if members != draft.members:
                problems.append("the archive does not hold what was written into it")
    held = draft.tracked | set(draft.members) | set(draft.not_saved)
    now = _scan(worktree)
    lost = sorted(now.files - held) + sorted(
        f for files in now.nested.values() for f in files if f not in draft.members
    )
    problems += [f"{rel}: on disk, not in the save" for rel in lost]
    return problems


def _members(path: Path) -> dict[str, tuple[bytes, int, str]]:
    """An archive's members, read back from disk; the whole gzip stream is read first, so
    its checksum vouches for every byte."""
    import gzip
    import tarfile

    with gzip.open(path) as gz:
        while gz.read(1 << 20):
            pass
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: (m.type, m.size, m.linkname) for m in tar}


def _publish(draft: _Draft, claim_dir: Path, why: str) -> Saved:
    patch = _name(draft.patch, claim_dir, why, "uncommitted.patch")
    archive = _name(draft.archive, claim_dir, why, "ignored.tar.gz")
    _fsync_dir(claim_dir)
    return Saved(patch, archive, tuple(draft.nested), tuple(draft.not_saved), draft.head)


def _name(checked: Path | None, claim_dir: Path, why: str, kind: str) -> Path | None:
    """Give a checked file its name. One of its kind an earlier save left (killed before
    the worktree was moved away) is stale: the worktree is whole, and this save is it."""
    final = claim_dir / f"{why}-{kind}"
    if checked is not None:
        os.replace(checked, final)
    for stale in claim_dir.glob(f"*-{kind}"):
        if checked is None or stale != final:
            stale.unlink(missing_ok=True)
    return final if checked is not None else None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unverified(
    worktree: Path, draft: _Draft, claim_dir: Path, why: str, problems: list[str]
) -> OperationalError:
    """The error for a save that failed its check, its files kept under names that say so."""
    kept = []
    for scratch_file, suffix in ((draft.patch, "uncommitted"), (draft.archive, "ignored")):
        if scratch_file is not None and scratch_file.exists():
            ext = ".patch" if suffix == "uncommitted" else ".tar.gz"
            kept.append(claim_dir / f"{why}-{suffix}{UNVERIFIED}{ext}")
            os.replace(scratch_file, kept[-1])
    return OperationalError(
        "save-check-failed",
        f"the save of {worktree} did not read back as what is on disk, so nothing was "
        f"removed: {'; '.join(problems[:5])}"
        + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
        hint="the worktree is untouched: run the command again (a file changing while it was "
        "saved does this), or copy the work out by hand; the partial save is kept",
        worktree=str(worktree),
        partial_save=[str(p) for p in kept],
        problems=problems[:20],
    )
