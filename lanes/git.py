"""The one door to git. Every other module asks this one; nothing else spawns git.

We run git's own commands as processes rather than through GitPython: the plumbing we
stand on (worktree add --no-checkout, update-ref compare-and-swap, merge-tree
--write-tree, commit-tree) is only reachable through its command wrapper anyway, and
importing it costs a tenth of a second on every call an agent makes (docs/decisions.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lanes.errors import OperationalError

ZERO_OID = "0" * 40

# An inherited GIT_DIR or GIT_INDEX_FILE (from a hook, say) would point every call at the
# wrong repository; git's own worktree discovery is what we want.
_INHERITED = ("GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_PREFIX")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED}
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> GitResult:
    """Run `git ARGS` in `cwd`; raise OperationalError naming the command when it fails."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            env=clean_env(env),
        )
    except OSError as exc:
        raise OperationalError("git-failed", f"cannot run git: {exc}", hint="install git") from exc
    result = GitResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise OperationalError(
            "git-failed",
            f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}",
            hint="see git's message above",
        )
    return result


def out(args: Sequence[str], cwd: Path) -> str:
    return run(args, cwd).stdout.strip()


@dataclass(frozen=True)
class Location:
    """Where a command runs: its worktree, the main checkout and the shared git dir."""

    toplevel: Path
    main_checkout: Path
    common_dir: Path
    branch: str | None


def locate(cwd: Path) -> Location:
    """Find the repository around `cwd` with one git call."""
    res = run(
        ["rev-parse", "--show-toplevel", "--git-common-dir", "--abbrev-ref", "HEAD"],
        cwd,
        check=False,
    )
    lines = res.stdout.splitlines()
    if res.returncode != 0 and len(lines) < 2:
        raise OperationalError(
            "not-a-repository",
            f"{cwd} is not inside a git repository",
            hint="run lanes from the main checkout or from a lane's worktree",
        )
    toplevel = Path(lines[0])
    common = Path(lines[1])
    if not common.is_absolute():
        common = (toplevel / common).resolve()
    branch = lines[2] if len(lines) > 2 and lines[2] != "HEAD" else None
    # The main checkout is the worktree that owns the common dir (<main>/.git).
    main_checkout = common.parent if common.name == ".git" else toplevel
    return Location(toplevel, main_checkout, common, branch)


def rev_parse(repo: Path, rev: str) -> str | None:
    res = run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def branch_exists(repo: Path, branch: str) -> bool:
    return (
        run(
            ["show-ref", "--verify", "--quiet", f"refs/heads/{branch}"], repo, check=False
        ).returncode
        == 0
    )


def worktree_add_no_checkout(
    repo: Path, path: Path, branch: str, base: str, *, new_branch: bool
) -> None:
    """Register a worktree without writing its files (the fast, lock-worthy half)."""
    args = ["worktree", "add", "--no-checkout"]
    args += ["-b", branch, str(path), base] if new_branch else [str(path), branch]
    run(args, repo)


def sparse_checkout_set(worktree: Path, patterns: Sequence[str]) -> None:
    run(["sparse-checkout", "set", "--cone", *patterns], worktree)


def checkout_files(worktree: Path) -> None:
    """Fill a --no-checkout worktree: index and files from HEAD, in parallel workers."""
    run(["-c", "checkout.workers=4", "reset", "--hard", "--quiet", "HEAD"], worktree)


def worktree_remove(repo: Path, path: Path) -> None:
    run(["worktree", "remove", "--force", str(path)], repo)


def worktree_prune(repo: Path) -> None:
    run(["worktree", "prune"], repo)


def delete_branch(repo: Path, branch: str) -> None:
    run(["branch", "-D", branch], repo, check=False)


def status_porcelain(worktree: Path) -> str:
    return run(["status", "--porcelain", "--untracked-files=all"], worktree).stdout


def diff_with_untracked(worktree: Path) -> str:
    """A binary patch of every uncommitted change against HEAD, untracked files included.

    Untracked files are marked intent-to-add so `git diff HEAD` shows their content; the
    index change is harmless because the worktree is about to be removed.
    """
    run(["add", "--intent-to-add", "--all"], worktree)
    return run(["diff", "--binary", "HEAD"], worktree).stdout


def commits_ahead(repo: Path, base: str, tip: str) -> int:
    res = run(["rev-list", "--count", f"{base}..{tip}"], repo, check=False)
    return int(res.stdout.strip()) if res.returncode == 0 and res.stdout.strip() else 0


def merge_base(repo: Path, a: str, b: str) -> str | None:
    res = run(["merge-base", a, b], repo, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def changed_paths(repo: Path, base: str, tip: str) -> list[str]:
    """Paths a branch changed since `base` (renames count as both sides)."""
    res = run(["diff", "--name-only", "--no-renames", "-z", base, tip], repo)
    return [p for p in res.stdout.split("\0") if p]


def update_ref_cas(repo: Path, ref: str, new: str, old: str, message: str) -> bool:
    """Move `ref` to `new` only if it still points at `old` (ZERO_OID: must not exist)."""
    res = run(["update-ref", "-m", message, ref, new, old], repo, check=False)
    return res.returncode == 0


# -- gate --
# The gate reads what deploys: the committed tree of `main`, not the checkout. Blobs are
# read as bytes (a workflow may hold any UTF-8), in one `cat-file --batch` process.


def _run_bytes(
    args: Sequence[str], cwd: Path, input: bytes | None = None
) -> tuple[int, bytes, str]:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=input, capture_output=True, env=clean_env()
        )
    except OSError as exc:
        raise OperationalError("git-failed", f"cannot run git: {exc}", hint="install git") from exc
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip()


def _text_of(args: Sequence[str], cwd: Path) -> str:
    code, data, err = _run_bytes(args, cwd)
    if code != 0:
        raise OperationalError(
            "git-failed", f"git {' '.join(args)} failed: {err}", hint="see git's message above"
        )
    return data.decode("utf-8", "replace")


def read_blobs(repo: Path, rev: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The content of each path in `rev`'s tree; None when it is missing or not a file."""
    found: dict[str, bytes | None] = {p: None for p in paths if "\n" in p}  # unaskable
    paths = [p for p in paths if p not in found]
    if not paths:
        return found
    request = "".join(f"{rev}:{p}\n" for p in paths).encode()
    code, data, err = _run_bytes(["cat-file", "--batch"], repo, request)
    if code != 0:
        raise OperationalError(
            "git-failed", f"git cat-file --batch failed: {err}", hint="see git fsck"
        )
    pos = 0
    for path in paths:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] in (b"blob", b"tree", b"commit", b"tag"):
            size = int(header[2])
            found[path] = data[pos : pos + size] if header[1] == b"blob" else None
            pos += size + 1
        else:  # "<object> missing" or "ambiguous"
            found[path] = None
    return found


def list_files(repo: Path, rev: str, directory: str) -> list[str] | None:
    """Names of the files directly in `directory` of `rev`'s tree; None if it is no directory."""
    spec = f"{rev}:{directory.strip('/')}" if directory.strip("/") else f"{rev}:"
    code, data, _ = _run_bytes(["ls-tree", "-z", spec], repo)
    if code != 0:
        return None
    names = []
    for record in data.split(b"\0"):
        meta, _, name = record.partition(b"\t")
        if name and meta.split()[1] == b"blob":
            names.append(name.decode("utf-8", "surrogateescape"))
    return names


def merge_commits(repo: Path, base: str, tip: str) -> list[tuple[str, str]]:
    """(sha, subject) of every merge commit reachable from `tip` but not from `base`."""
    text = _text_of(["log", "--merges", "--format=%H %s", f"{base}..{tip}"], repo)
    return [(line[:40], line[41:]) for line in text.splitlines() if line]


def messages_containing(repo: Path, rev: str, text: str) -> list[tuple[str, str]]:
    """(sha, full message) of the commits on `rev` whose message contains `text`."""
    out = _text_of(["log", "--fixed-strings", f"--grep={text}", "--format=%H%n%B%x00", rev], repo)
    found = []
    for chunk in out.split("\0"):
        sha, _, message = chunk.strip("\n").partition("\n")
        if sha:
            found.append((sha, message))
    return found


def merge_base_all(repo: Path, revs: Sequence[str]) -> str | None:
    """The newest commit every one of `revs` descends from."""
    if not revs:
        return None
    if len(revs) == 1:
        return rev_parse(repo, revs[0])
    res = run(["merge-base", "--octopus", *revs], repo, check=False)
    return (res.stdout.strip() or None) if res.returncode == 0 else None


def branches_under(repo: Path, prefix: str) -> list[str]:
    """Local branches whose names start with `prefix` (e.g. lanes/44/)."""
    res = run(["for-each-ref", "--format=%(refname:short)", f"refs/heads/{prefix}"], repo)
    return [line for line in res.stdout.splitlines() if line]
