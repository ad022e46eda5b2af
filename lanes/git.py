"""The one door to git. Every other module asks this one; nothing else spawns git.

We run git's own commands as processes rather than through GitPython: the plumbing we
stand on (worktree add --no-checkout, update-ref compare-and-swap, merge-tree
--write-tree, commit-tree) is only reachable through its command wrapper anyway, and
importing it costs a tenth of a second on every call an agent makes (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
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
    """Run `git ARGS` in `cwd`; raise OperationalError naming the command when it fails.

    Output is decoded as UTF-8 whatever the locale; bytes that are not UTF-8 survive as
    surrogate escapes, so `.encode("utf-8", "surrogateescape")` gives back git's exact bytes.
    """
    code, data, err = _run_bytes(args, cwd, input.encode() if input is not None else None, env)
    stdout = data.decode("utf-8", "surrogateescape")
    if check and code != 0:
        raise OperationalError(
            "git-failed",
            f"git {' '.join(args)} failed: {err or stdout.strip()}",
            hint="see git's message above",
        )
    return GitResult(code, stdout, err)


def _run_bytes(
    args: Sequence[str],
    cwd: Path,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, bytes, str]:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, input=input, capture_output=True, env=clean_env(env)
        )
    except OSError as exc:
        raise OperationalError("git-failed", f"cannot run git: {exc}", hint="install git") from exc
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip()


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
        no_tree = "work tree" in (res.stderr or "")  # a bare repository, or inside .git
        raise OperationalError(
            "not-a-repository",
            f"{cwd} is "
            + (
                "in a git repository but not in a checkout of it"
                if no_tree
                else "not inside a git repository"
            ),
            hint="run lanes from the main checkout or from a lane's worktree",
        )
    toplevel = Path(lines[0])
    common = Path(lines[1])
    if not common.is_absolute():  # git prints it relative to where it ran, not the top
        common = (Path(cwd) / common).resolve()
    branch = lines[2] if len(lines) > 2 and lines[2] != "HEAD" else None
    if branch is None and len(lines) > 2:  # detached mid-rebase: still that lane's worktree
        rebasing = _rebasing(toplevel)
        branch = rebasing if rebasing and rebasing.startswith("lanes/") else None
    # The main checkout is the worktree that owns the common dir (<main>/.git).
    main_checkout = common.parent if common.name == ".git" else toplevel
    return Location(toplevel, main_checkout, common, branch)


def _rebasing(worktree: Path) -> str | None:
    """The branch a rebase in progress in `worktree` rewrites (None: no rebase)."""
    dot = worktree / ".git"
    try:
        if dot.is_file():  # a linked worktree: "gitdir: <path>"
            text = dot.read_text(encoding="utf-8").strip()
            git_dir = Path(text.removeprefix("gitdir:").strip())
            git_dir = git_dir if git_dir.is_absolute() else (worktree / git_dir)
        else:
            git_dir = dot
    except OSError:
        return None
    return in_progress(git_dir)[1]


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


def worktree_prune(repo: Path) -> None:
    run(["worktree", "prune"], repo)


def delete_branch(repo: Path, branch: str) -> bool:
    return run(["branch", "-D", branch], repo, check=False).returncode == 0


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


def _text_of(args: Sequence[str], cwd: Path) -> str:
    code, data, err = _run_bytes(args, cwd)
    if code != 0:
        raise OperationalError(
            "git-failed", f"git {' '.join(args)} failed: {err}", hint="see git's message above"
        )
    return data.decode("utf-8", "replace")


def read_blobs(repo: Path, rev: str, paths: Sequence[str]) -> dict[str, bytes | None]:
    """The content of each path in `rev`'s tree; None when it is missing or not a file."""
    unique = list(dict.fromkeys(paths))
    return dict(zip(unique, blobs_at(repo, [f"{rev}:{p}" for p in unique]), strict=True))


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


# -- integrator --
# Plumbing for the serial pass (integrator/): a scratch worktree per pass, commits replayed
# with cherry-pick (never a merge), trailers read back from main, the user's checkout
# brought along. Hooks are off in the scratch worktree: they ran when the agent committed.
_NO_HOOKS = ("-c", "core.hooksPath=/dev/null")


def worktree_add_detached(repo: Path, path: Path, rev: str) -> None:
    """Register a detached worktree without writing files (fill it with checkout_files)."""
    run(["worktree", "add", "--detach", "--no-checkout", str(path), rev], repo)


def worktree_paths(repo: Path) -> list[Path]:
    res = run(["worktree", "list", "--porcelain"], repo)
    return [Path(line[9:]) for line in res.stdout.splitlines() if line.startswith("worktree ")]


def commits_to_replay(repo: Path, onto: str, tip: str) -> list[str]:
    """The non-merge commits of `tip` not in `onto`, oldest first (what a rebase replays)."""
    res = run(["rev-list", "--reverse", "--no-merges", f"{onto}..{tip}"], repo)
    return res.stdout.split()


def commit_messages(repo: Path, onto: str, tip: str) -> list[tuple[str, str]]:
    res = run(["log", "--no-merges", "--format=%H%x00%B%x1e", f"{onto}..{tip}"], repo)
    return _split_log(res.stdout)


def _split_log(text: str) -> list[tuple[str, str]]:
    found = []
    for record in text.split("\x1e"):
        sha, sep, body = record.strip("\n").partition("\x00")
        if sep:
            found.append((sha.strip(), body))
    return found


def cherry_pick(worktree: Path, commits: Sequence[str], env: dict[str, str]) -> GitResult:
    return run(
        [*_NO_HOOKS, "cherry-pick", "--allow-empty", "--keep-redundant-commits", *commits],
        worktree,
        check=False,
        env=env,
    )


def conflicted_paths(worktree: Path) -> list[str]:
    res = run(["diff", "--name-only", "--diff-filter=U", "-z"], worktree, check=False)
    return sorted({p for p in res.stdout.split("\0") if p})


def reset_scratch(worktree: Path, rev: str) -> None:
    """Back to exactly `rev`: no sequencer state, no stray files (the scratch is ours)."""
    run(["cherry-pick", "--abort"], worktree, check=False)
    run(["reset", "--hard", "--quiet", rev], worktree)
    run(["clean", "-ffdxq"], worktree)


def commit_paths(worktree: Path, paths: Sequence[str], message: str, env: dict[str, str]) -> str:
    """Stage `paths` and commit (empty allowed: the commit may only carry trailers)."""
    if paths:
        run(["add", "--", *paths], worktree)
    run(
        [*_NO_HOOKS, "commit", "--quiet", "--allow-empty", "--no-verify", "-F", "-"],
        worktree,
        input=message,
        env=env,
    )
    return out(["rev-parse", "HEAD"], worktree)


def identity_env(repo: Path) -> dict[str, str]:
    """A committer for the pass: git's own if configured, else a named fallback."""
    if run(["var", "GIT_COMMITTER_IDENT"], repo, check=False).returncode == 0:
        return {}
    who = {"NAME": "lanes integrator", "EMAIL": "lanes-integrator@localhost"}
    return {f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()}


def log_grep(repo: Path, ref: str, pattern: str) -> list[tuple[str, str]]:
    """(sha, message) of commits reachable from `ref` whose message matches (ERE), newest first."""
    res = run(["log", "-E", f"--grep={pattern}", "--format=%H%x00%B%x1e", ref, "--"], repo)
    return _split_log(res.stdout)


def is_dir_at(repo: Path, rev: str, path: str) -> bool:
    """Whether `path` is a directory (a tree) in `rev`."""
    res = run(["cat-file", "-t", f"{rev}:{path.strip('/')}"], repo, check=False)
    return res.returncode == 0 and res.stdout.strip() == "tree"


def show_file(repo: Path, rev: str, path: str) -> str | None:
    """A file's text at `rev`, or None when it does not exist there."""
    res = run(["cat-file", "-p", f"{rev}:{path}"], repo, check=False)
    return res.stdout if res.returncode == 0 else None


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    res = run(["merge-base", "--is-ancestor", ancestor, descendant], repo, check=False)
    return res.returncode == 0


def merge_tree(repo: Path, ours: str, theirs: str) -> tuple[bool, str, list[str]]:
    """Predict a merge without touching any ref or worktree: (clean, tree, conflicted files)."""
    res = run(
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs],
        repo,
        check=False,
    )
    if res.returncode not in (0, 1):
        raise OperationalError(
            "git-failed", f"git merge-tree failed: {res.stderr.strip()}", hint="git 2.38+ needed"
        )
    parts = [p for p in res.stdout.split("\0") if p]
    return res.returncode == 0, parts[0], sorted(set(parts[1:]))


def commit_tree(repo: Path, tree: str, parents: Sequence[str], message: str) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    return run(args, repo, input=message, env=identity_env(repo)).stdout.strip()


def head_branch(worktree: Path) -> str | None:
    """The branch a worktree has checked out (refs/heads/...), None when detached."""
    res = run(["symbolic-ref", "--quiet", "HEAD"], worktree, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def tracked_changes(worktree: Path) -> bool:
    """True when tracked files differ from HEAD (untracked files do not count)."""
    return bool(run(["status", "--porcelain", "--untracked-files=no"], worktree).stdout.strip())


def index_at(worktree: Path, rev: str) -> bool:
    """True when the index holds exactly `rev`'s tree (the files may still differ)."""
    res = run(["diff-index", "--cached", "--quiet", rev, "--"], worktree, check=False)
    return res.returncode == 0


def move_files(worktree: Path, old: str, new: str) -> GitResult:
    """Two-tree merge of index and files from `old` to `new`; refuses (changing nothing)
    when a local change would be overwritten. What `git merge --ff-only` does to files."""
    return run(["read-tree", "-m", "-u", old, new], worktree, check=False)


def detach_head(worktree: Path, rev: str) -> None:
    """Point HEAD at `rev` directly (detached), leaving index and files alone."""
    run(
        ["update-ref", "--no-deref", "-m", "lanes: detach behind a moved branch", "HEAD", rev],
        worktree,
    )


def added_paths(repo: Path, old: str, new: str) -> list[str]:
    """Paths `new`'s tree has and `old`'s does not (renames counted as additions)."""
    code, data, _ = _run_bytes(
        ["diff", "--no-renames", "--name-only", "-z", "--diff-filter=A", old, new], repo
    )
    if code != 0:
        return []
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p]


def upstream(repo: Path, branch: str) -> tuple[str, str, str | None] | None:
    """(remote, branch on the remote, its tip as last fetched or None) for `branch`'s
    upstream; without one, the only remote that has a `<remote>/<branch>` tracking ref."""
    code, data, _ = _run_bytes(
        [
            "for-each-ref",
            "--format=%(upstream:remotename)%00%(upstream:remoteref)%00%(upstream)",
            f"refs/heads/{branch}",
        ],
        repo,
    )
    fields = data.decode("utf-8", "replace").strip().split("\0") if code == 0 else []
    if len(fields) == 3 and fields[0] and fields[1]:
        remote, ref, tracking = fields
        return remote, ref.removeprefix("refs/heads/"), rev_parse(repo, tracking)
    code, data, _ = _run_bytes(
        ["for-each-ref", "--format=%(refname)", f"refs/remotes/*/{branch}"], repo
    )
    refs = data.decode("utf-8", "replace").split() if code == 0 else []
    if len(refs) != 1:
        return None
    remote = refs[0].removeprefix("refs/remotes/").removesuffix(f"/{branch}")
    return remote, branch, rev_parse(repo, refs[0])


def tree_paths(repo: Path, rev: str) -> list[str]:
    """Every file path in `rev`'s tree (one `ls-tree -r`: what discovery looks through)."""
    code, data, _ = _run_bytes(["ls-tree", "-r", "-z", "--name-only", rev], repo)
    if code != 0:
        return []
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p]


def worktree_files(worktree: Path) -> list[str]:
    """Tracked and untracked, not ignored, files of a working tree (what `init` sees)."""
    code, data, _ = _run_bytes(
        ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], worktree
    )
    if code != 0:
        return []
    return sorted({p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p})


# -- the guard and squash landing --


@dataclass(frozen=True)
class CommitFiles:
    """One commit a replay would pick, and the paths it changes against its parent."""

    sha: str
    subject: str
    author_name: str
    author_email: str
    paths: list[str]


def replayed_changes(repo: Path, onto: str, tip: str) -> list[CommitFiles]:
    """For each commit `commits_to_replay(onto, tip)` returns, in its order, the paths it
    changes against its parent (a rename counts as both sides): one `git log`, not one
    process per commit. Merge commits are left out, as the replay leaves them out."""
    text = run(
        [
            "log",
            "--reverse",
            "--no-merges",
            "--no-renames",
            "--no-relative",
            "--no-show-signature",
            "--no-color",
            "--name-only",
            "-z",
            "--format=%x1e%H%x1f%an%x1f%ae%x1f%s",
            f"{onto}..{tip}",
            "--",
        ],
        repo,
    ).stdout  # paths that are not UTF-8 survive as surrogate escapes
    found: list[CommitFiles] = []
    first = False
    for token in text.split("\0"):
        if token.startswith("\x1e") and token.count("\x1f") >= 3:
            sha, name, email, subject = token[1:].split("\x1f", 3)
            found.append(CommitFiles(sha, subject, name, email, []))
            first = True
        elif token and found:
            # the first path of a commit follows a newline that ends its header
            found[-1].paths.append(token[1:] if first and token.startswith("\n") else token)
            first = False
    return found


def reset_soft(worktree: Path, rev: str) -> None:
    """Move HEAD to `rev`, keeping index and files (what a squash commits again)."""
    run(["reset", "--soft", "--quiet", rev], worktree)


def ignored_by(worktree: Path, path: str) -> str | None:
    """The rule that makes git ignore `path` in `worktree` ("SOURCE:LINE:PATTERN", e.g.
    ".gitignore:3:tools/"), or None when no rule does. Asked with `--no-index`, so a path
    that happens to be tracked is judged by the ignore rules alone."""
    result = run(
        ["check-ignore", "-v", "-z", "--stdin", "--no-index"],
        worktree,
        check=False,
        input=path + "\0",
    )
    fields = result.stdout.split("\0")  # -z: SOURCE, LINE, PATTERN, PATH, each NUL-ended
    if result.returncode != 0 or len(fields) < 4:
        return None
    source, line, pattern = fields[:3]
    if pattern.startswith("!"):  # -v also reports the negation that un-ignores it
        return None
    return f"{source}:{line}:{pattern}"


# -- the guard's reads and the pass's compare-and-swap, with git's own answer --


def blobs_at(repo: Path, specs: Sequence[str]) -> list[bytes | None]:
    """The content of each `REV:PATH` in `specs`, in order (None: missing, or not a file),
    in one `cat-file --batch`."""
    asked = [s for s in specs if "\n" not in s]
    if not asked:
        return [None] * len(specs)
    code, data, err = _run_bytes(
        ["cat-file", "--batch"], repo, "".join(f"{s}\n" for s in asked).encode()
    )
    if code != 0:
        raise OperationalError(
            "git-failed", f"git cat-file --batch failed: {err}", hint="see git fsck"
        )
    found: dict[str, bytes | None] = {}
    pos = 0
    for spec in asked:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[1] in (b"blob", b"tree", b"commit", b"tag"):
            size = int(header[2])
            found[spec] = data[pos : pos + size] if header[1] == b"blob" else None
            pos += size + 1
        else:  # "<spec> missing" or "ambiguous"
            found[spec] = None
    return [found.get(s) for s in specs]


def update_ref(repo: Path, ref: str, new: str, old: str, message: str) -> GitResult:
    """`update_ref_cas` keeping git's answer: when it fails, stderr says why (a hook's
    output and "ref updates aborted by hook", or the lock file it could not create)."""
    return run(["update-ref", "-m", message, ref, new, old], repo, check=False)


# -- the remote lanes coordinates through (lanes/coord/remote.py) --
# Every call names the remote; none writes a local ref or FETCH_HEAD (many lanes commands
# run at once in one clone, and would fight over them): objects are fetched by id.

_QUIET = ["-c", "protocol.version=2", "-c", "gc.auto=0", "-c", "maintenance.auto=false"]


def remote_url(repo: Path, remote: str) -> str | None:
    """The URL of the remote `remote`, or None when the repository has no such remote."""
    res = run(["remote", "get-url", "--", remote], repo, check=False)
    return res.stdout.strip() if res.returncode == 0 else None


def ls_remote(
    repo: Path, remote: str, patterns: Sequence[str]
) -> tuple[dict[str, str] | None, str]:
    """{ref: sha} of the remote's refs matching `patterns` (as the server has them now), or
    (None, git's message) when it cannot be asked."""
    res = run([*_QUIET, "ls-remote", "--", remote, *patterns], repo, check=False)
    if res.returncode != 0:
        return None, res.stderr.strip() or res.stdout.strip()
    found: dict[str, str] = {}
    for line in res.stdout.splitlines():
        sha, _, ref = line.partition("\t")
        if ref and not ref.endswith("^{}"):
            found[ref] = sha
    return found, ""


def missing_objects(repo: Path, shas: Sequence[str]) -> list[str]:
    """Those of `shas` this repository does not have (one `cat-file --batch-check`)."""
    if not shas:
        return []
    res = run(["cat-file", "--batch-check"], repo, input="".join(f"{s}\n" for s in shas))
    return [line.split()[0] for line in res.stdout.splitlines() if line.endswith(" missing")]


def fetch_objects(repo: Path, remote: str, shas: Sequence[str]) -> GitResult:
    """Fetch the commits `shas` (and what they reach) without writing any ref."""
    args = [*_QUIET, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", remote]
    return run([*args, *shas], repo, check=False)


def push_atomic(
    repo: Path, remote: str, updates: Sequence[tuple[str, str, str | None]]
) -> GitResult:
    """One atomic push of `updates` (src, dst ref, the exact sha the remote must hold there
    now, "" for absent, None for no lease), all or nothing; `--porcelain` answers per ref."""
    args = [*_QUIET, "push", "--atomic", "--porcelain", "--no-verify", "--quiet"]
    for _, dst, old in updates:
        if old is not None:
            args.append(f"--force-with-lease={dst}:{old}")
    args += [
        "--",
        remote,
        *(f"{'+' if old is None else ''}{src}:{dst}" for src, dst, old in updates),
    ]
    return run(args, repo, check=False)


def write_tree_of(repo: Path, files: dict[str, bytes]) -> str:
    """A tree holding `files` ({path: content}, paths with "/" make folders), written to the
    object store; no index or worktree is touched."""
    blobs: dict[str, str] = {}
    for path, data in files.items():
        code, sha, err = _run_bytes(["hash-object", "-w", "--stdin"], repo, data)
        if code != 0:
            raise OperationalError("git-failed", f"git hash-object failed: {err}", hint="")
        blobs[path] = sha.decode().strip()

    def tree(prefix: str) -> str:
        entries, folders = [], set()
        for path, sha in blobs.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest:
                folders.add(rest.split("/", 1)[0])
            else:
                entries.append(f"100644 blob {sha}\t{rest}")
        for folder in sorted(folders):
            entries.append(f"040000 tree {tree(prefix + folder + '/')}\t{folder}")
        return run(["mktree"], repo, input="".join(e + "\n" for e in entries)).stdout.strip()

    return tree("")


def commit_log(repo: Path, tip: str) -> list[tuple[str, list[str], int, str]]:
    """(sha, parents, committer time, message) of every commit reachable from `tip`, oldest
    first."""
    res = run(["log", "--reverse", "--format=%H%x00%P%x00%ct%x00%B%x1e", tip, "--"], repo)
    found = []
    for chunk in res.stdout.split("\x1e"):
        chunk = chunk.lstrip("\n")
        if not chunk:
            continue
        sha, parents, when, message = chunk.split("\0", 3)
        found.append((sha, parents.split(), int(when), message))
    return found


def commit_info(repo: Path, sha: str) -> tuple[list[str], int, str]:
    """(parents, committer time, message) of one commit."""
    res = run(["log", "-1", "--format=%P%x00%ct%x00%B", sha, "--"], repo)
    parents, when, message = res.stdout.split("\0", 2)
    return parents.split(), int(when), message


def commit_times(repo: Path, shas: Sequence[str]) -> dict[str, int]:
    """{sha: committer time} of the commits `shas`, in one process."""
    if not shas:
        return {}
    res = run(["log", "--no-walk=unsorted", "--format=%H %ct", *shas, "--"], repo)
    return {sha: int(when) for sha, when in (line.split() for line in res.stdout.splitlines())}


# -- landing without a working tree (integrator/land.py) --
# The pass replays lanes in the object store: `merge-tree --write-tree` per replayed commit
# (one process each: git 2.39 has no merge-tree batch mode that answers line by line), and
# every other object read or written through four long-running git processes, so a lane
# costs one process start, not ten (docs/integrator.md, "Landing without a working tree").

_OID_HEX = frozenset("0123456789abcdef")


def _is_oid(text: str) -> bool:
    return len(text) in (40, 64) and set(text) <= _OID_HEX


# Plain classes with __slots__ here, not dataclasses: every lanes command imports this
# module, and a dataclass costs half a millisecond to make.


class TreeEntry:
    __slots__ = ("mode", "name", "sha")

    def __init__(self, mode: str, sha: str, name: bytes) -> None:
        self.mode = mode  # as git writes it in a tree: 100644, 100755, 120000, 40000, 160000
        self.sha = sha
        self.name = name  # git's bytes: a name need not be UTF-8

    @property
    def kind(self) -> str:
        return {"40000": "tree", "160000": "commit"}.get(self.mode, "blob")


class _Pipe:
    """One long-running git process answering one request at a time on its stdout. Its
    stderr goes to a file, so a chatty process can never block on a full pipe."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str], errors: Path):
        self.args, self.cwd, self.env, self.errors = list(args), cwd, env, errors
        self.proc: subprocess.Popen[bytes] | None = None

    def send(self, data: bytes) -> None:
        if self.proc is None or self.proc.poll() is not None:
            with open(self.errors, "wb") as err:
                try:
                    self.proc = subprocess.Popen(
                        ["git", *self.args],
                        cwd=self.cwd,
                        env=self.env,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                    )
                except OSError as exc:
                    raise OperationalError(
                        "git-failed", f"cannot run git: {exc}", hint="install git"
                    ) from exc
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self.error() from None

    def line(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        return self.proc.stdout.readline()

    def exactly(self, size: int) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        data = self.proc.stdout.read(size)
        if len(data) != size:
            raise self.error()
        return data

    def error(self) -> OperationalError:
        """The process died on a request: its message, as an error (the next send restarts
        it)."""
        self._end(kill=True)
        said = self.errors.read_text(encoding="utf-8", errors="replace").strip()
        return OperationalError(
            "git-failed",
            f"git {' '.join(self.args)} failed: {said or 'it exited without a word'}",
            hint="see git's message above",
        )

    def close(self) -> None:
        self._end(kill=False)

    def _end(self, kill: bool) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        from contextlib import suppress

        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with suppress(OSError):  # a pipe the dead process left unflushed
                    stream.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ObjectStore:
    """Reads and writes git objects without a working tree, through long-running processes
    started when first needed: `cat-file --batch` (read), `hash-object -w --stdin-paths`
    (blobs, and commits with `-t commit`; the bytes go through a file in `workdir`) and
    `mktree -z --batch` (trees). Trees read are cached (an object never changes). With
    `env` (GIT_DIR, GIT_WORK_TREE) the processes run where the merges run."""

    def __init__(self, repo: Path, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.repo, self.workdir = repo, workdir
        self.env = clean_env(env)
        self._pipes: dict[str, _Pipe] = {}
        self._trees: dict[str, list[TreeEntry]] = {}
        self._written = 0

    def _pipe(self, name: str, args: Sequence[str]) -> _Pipe:
        if name not in self._pipes:
            self._pipes[name] = _Pipe(args, self.repo, self.env, self.workdir / f"{name}.err")
        return self._pipes[name]

    def read(self, sha: str) -> tuple[str, bytes] | None:
        """(type, content) of the object `sha`, None when there is none."""
        if not _is_oid(sha):
            raise ValueError(f"not an object id: {sha!r}")
        pipe = self._pipe("read", ["cat-file", "--batch"])
        pipe.send(f"{sha}\n".encode())
        header = pipe.line().split()
        if not header:
            raise pipe.error()
        if len(header) != 3:  # "<sha> missing"
            return None
        data = pipe.exactly(int(header[2]) + 1)[:-1]
        return header[1].decode(), data

    def tree(self, sha: str) -> list[TreeEntry] | None:
        """The entries of tree `sha` (None when it is not a tree)."""
        if sha in self._trees:
            return self._trees[sha]
        found = self.read(sha)
        if found is None or found[0] != "tree":
            return None
        entries, data, pos, width = [], found[1], 0, len(sha) // 2
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            raw = data[nul + 1 : nul + 1 + width]
            entries.append(TreeEntry(data[pos:space].decode(), raw.hex(), data[space + 1 : nul]))
            pos = nul + 1 + width
        self._trees[sha] = entries
        return entries

    def _hash(self, kind: str, data: bytes) -> str:
        pipe = self._pipe(kind, ["hash-object", "-t", kind, "-w", "--no-filters", "--stdin-paths"])
        # A new file each time, removed once read: rewriting one file in place makes ext4
        # flush it to disk at once (auto_da_alloc), a few milliseconds a write.
        self._written += 1
        path = self.workdir / f"object-{self._written}"
        path.write_bytes(data)
        try:
            pipe.send(f"{path}\n".encode())
            line = pipe.line().decode().strip()
        finally:
            path.unlink(missing_ok=True)
        if not _is_oid(line):
            raise pipe.error()
        return line

    def blob(self, data: bytes) -> str:
        return self._hash("blob", data)

    def commit(self, data: bytes) -> str:
        """Write a commit object given whole (see `commit_object`)."""
        return self._hash("commit", data)

    def make_tree(self, entries: Sequence[TreeEntry]) -> str:
        """Write a tree of `entries` (git sorts them) and remember it."""
        pipe = self._pipe("tree", ["mktree", "-z", "--batch"])
        kinds = {e.name: e.kind for e in entries}
        if len(kinds) != len(entries):
            raise ValueError("two tree entries with one name")
        request = b"".join(
            f"{e.mode} {e.kind} {e.sha}\t".encode() + e.name + b"\0" for e in entries
        )
        pipe.send(request + b"\0")
        line = pipe.line().decode().strip()
        if not _is_oid(line):
            raise pipe.error()
        self._trees[line] = sorted(entries, key=_tree_order)
        return line

    def close(self) -> None:
        for pipe in self._pipes.values():
            pipe.close()
        self._pipes.clear()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tree_order(entry: TreeEntry) -> bytes:
    """git's order of tree entries: by name, a tree as if its name ended with '/'."""
    return entry.name + (b"/" if entry.mode == "40000" else b"")


class MergeResult:
    __slots__ = ("code", "conflicted", "message", "tree")

    def __init__(self, code: int, tree: str, conflicted: list[str], message: str) -> None:
        self.code = code  # 0 clean, 1 conflicts, anything else: git could not merge
        self.tree = tree
        self.conflicted = conflicted
        self.message = message  # what git said when it could not merge


def merge_tree_at(env: dict[str, str], cwd: Path, ours: str, theirs: str) -> MergeResult:
    """`git merge-tree --write-tree OURS THEIRS` run where `env` and `cwd` say (the merge
    reads the .gitattributes of the working tree it runs in: see integrator/land.py)."""
    code, data, err = _run_bytes(
        ["merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs],
        cwd,
        env=env,
    )
    parts = [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p]
    if code not in (0, 1) or not parts or not _is_oid(parts[0]):
        return MergeResult(code or 128, "", [], err or "merge-tree printed no tree")
    return MergeResult(code, parts[0], sorted(set(parts[1:])), "")


class RawCommit:
    """A commit object as git stores it, split at its headers."""

    __slots__ = ("author", "encoding", "message", "parents", "sha", "tree")

    def __init__(
        self,
        sha: str,
        tree: str,
        parents: list[str],
        author: bytes,
        encoding: bytes | None,
        message: bytes,
    ) -> None:
        self.sha, self.tree, self.parents = sha, tree, parents
        self.author = author  # the whole author line after "author ": name <email> time zone
        self.encoding = encoding
        self.message = message  # exactly as stored

    @property
    def text(self) -> str:
        return self.message.decode("utf-8", "replace")

    @property
    def subject(self) -> str:
        """What `%s` prints: the first paragraph, its lines joined by spaces."""
        first = self.text.strip("\n").split("\n\n", 1)[0]
        return " ".join(line.strip() for line in first.splitlines() if line.strip())

    @property
    def author_name(self) -> str:
        return self.author.split(b" <", 1)[0].decode("utf-8", "replace")

    @property
    def author_email(self) -> str:
        rest = self.author.split(b" <", 1)[-1]
        return rest.split(b">", 1)[0].decode("utf-8", "replace")


def parse_commit(sha: str, data: bytes) -> RawCommit:
    head, _, message = data.partition(b"\n\n")
    tree, parents, author, encoding = "", [], b"", None
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode()
        elif key == b"parent":
            parents.append(value.decode())
        elif key == b"author":
            author = value
        elif key == b"encoding":
            encoding = value
    return RawCommit(sha, tree, parents, author, encoding, message)


def commit_object(
    tree: str,
    parents: Sequence[str],
    author: bytes,
    committer: bytes,
    message: bytes,
    encoding: bytes | None = None,
) -> bytes:
    """The bytes of a commit object, headers in git's order."""
    lines = [b"tree " + tree.encode(), *(b"parent " + p.encode() for p in parents)]
    lines += [b"author " + author, b"committer " + committer]
    if encoding:
        lines.append(b"encoding " + encoding)
    return b"\n".join(lines) + b"\n\n" + message


def read_objects(repo: Path, shas: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """{sha: (type, content)} of the objects `shas` that exist, in one `cat-file --batch`."""
    asked = [s for s in dict.fromkeys(shas) if _is_oid(s)]
    if not asked:
        return {}
    code, data, err = _run_bytes(
        ["cat-file", "--batch"], repo, "".join(f"{s}\n" for s in asked).encode()
    )
    if code != 0:
        raise OperationalError(
            "git-failed", f"git cat-file --batch failed: {err}", hint="see git fsck"
        )
    found: dict[str, tuple[str, bytes]] = {}
    pos = 0
    for sha in asked:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) == 3:
            size = int(header[2])
            found[sha] = (header[1].decode(), data[pos : pos + size])
            pos += size + 1
    return found


def resolve_commits(repo: Path, revs: Sequence[str]) -> list[str | None]:
    """The commit each of `revs` names (None: no such commit), in one `cat-file`."""
    asked = [r for r in dict.fromkeys(revs) if r and "\n" not in r and " " not in r.strip()]
    found: dict[str, str] = {}
    if asked:
        code, data, _ = _run_bytes(
            ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
            repo,
            "".join(f"{r}^{{commit}}\n" for r in asked).encode(),
        )
        lines = data.decode("utf-8", "replace").splitlines() if code == 0 else []
        for rev, line in zip(asked, lines, strict=False):
            parts = line.split()
            if len(parts) == 2 and parts[1] == "commit" and _is_oid(parts[0]):
                found[rev] = parts[0]
    return [found.get(r) for r in revs]


class GraphCommit:
    """A commit of `onto..tips`: its parents and the paths it changes against its first
    parent (none for a merge: the guard judges merges otherwise)."""

    __slots__ = ("parents", "paths", "sha")

    def __init__(self, sha: str, parents: list[str], paths: list[str]) -> None:
        self.sha, self.parents, self.paths = sha, parents, paths


def commits_between(repo: Path, onto: str, tips: Sequence[str]) -> dict[str, GraphCommit]:
    """Every commit reachable from one of `tips` and not from `onto`, with its parents and
    changed paths: one `git log --raw -z` for all the lanes of a pass. The raw format makes
    the parse unambiguous whatever a path holds (a record is `:meta` then one path)."""
    if not tips:
        return {}
    revs = "".join(f"{t}\n" for t in tips if _is_oid(t)) + f"^{onto}\n"
    code, data, err = _run_bytes(
        [
            "log",
            "-z",
            "--raw",
            "--no-renames",
            "--no-abbrev",
            "--no-relative",
            "--no-show-signature",
            "--no-color",
            "--no-ext-diff",
            "--format=%H %P",
            "--stdin",
            "--",
        ],
        repo,
        revs.encode(),
    )
    if code != 0:
        raise OperationalError("git-failed", f"git log failed: {err}", hint="see git's message")
    found: dict[str, GraphCommit] = {}
    current: GraphCommit | None = None
    tokens = data.split(b"\0")
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip(b"\n")
        i += 1
        if not token:
            continue
        if token.startswith(b":") and current is not None:
            if i < len(tokens):
                current.paths.append(tokens[i].decode("utf-8", "surrogateescape"))
            i += 1
            continue
        words = token.decode("ascii", "replace").split()
        if words and all(_is_oid(w) for w in words):
            current = GraphCommit(words[0], words[1:], [])
            found[current.sha] = current
    return found


class Identity:
    """Who the pass commits as, and whether git would sign its commits."""

    __slots__ = ("author", "author_date", "committer", "committer_date", "env", "sign", "zone")

    def __init__(
        self,
        author: bytes,
        committer: bytes,
        author_date: bytes | None,
        committer_date: bytes | None,
        zone: bytes,
        sign: bool,
        env: dict[str, str],
    ) -> None:
        self.author, self.committer = author, committer  # "Name <email>", without time
        self.author_date = author_date  # fixed by GIT_AUTHOR_DATE, else None: now
        self.committer_date = committer_date
        self.zone = zone  # this machine's offset, e.g. +0900
        self.sign = sign  # commit.gpgSign: commits go through `git commit-tree -S`
        self.env = env  # the fallback identity, when git has none configured

    def stamp(self, who: bytes, fixed: bytes | None = None) -> bytes:
        import time

        return who + b" " + (fixed or f"{int(time.time())} ".encode() + self.zone)


def pass_identity(repo: Path) -> Identity:
    env = identity_env(repo)
    listed = run(["var", "-l"], repo, env=env).stdout.splitlines()
    values = dict(line.partition("=")[::2] for line in listed)
    sign = values.get("commit.gpgsign", "false").strip().lower() in ("true", "yes", "on", "1")

    def split(ident: str) -> tuple[bytes, bytes]:
        who, _, when = ident.strip().rpartition(">")
        return (who + ">").encode(), when.strip().encode()

    author, author_when = split(values.get("GIT_AUTHOR_IDENT", ""))
    committer, committer_when = split(values.get("GIT_COMMITTER_IDENT", ""))
    zone = committer_when.split()[-1] if committer_when else b"+0000"
    fixed = {k for k in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE") if clean_env(env).get(k)}
    return Identity(
        author,
        committer,
        author_when if "GIT_AUTHOR_DATE" in fixed else None,
        committer_when if "GIT_COMMITTER_DATE" in fixed else None,
        zone,
        sign,
        env,
    )


def commit_tree_signed(
    repo: Path,
    tree: str,
    parents: Sequence[str],
    author: bytes,
    message: bytes,
    encoding: bytes | None,
    env: dict[str, str],
) -> str:
    """A commit made and signed by `git commit-tree -S` (as `git commit` and cherry-pick
    sign when commit.gpgSign says so; commit-tree itself only reads that setting for -S)."""
    who, _, when = author.rpartition(b">")
    name, _, email = who.partition(b" <")
    stamp = when.strip().decode()
    extra = {
        **env,
        "GIT_AUTHOR_NAME": name.decode("utf-8", "surrogateescape"),
        "GIT_AUTHOR_EMAIL": email.decode("utf-8", "surrogateescape"),
        "GIT_AUTHOR_DATE": f"@{stamp}" if stamp else "",
    }
    args = ["-c", f"i18n.commitEncoding={encoding.decode()}"] if encoding else []
    args += ["commit-tree", "-S", tree]
    for parent in parents:
        args += ["-p", parent]
    code, data, err = _run_bytes(args, repo, message, extra)
    if code != 0:
        raise OperationalError("git-failed", f"git commit-tree failed: {err}", hint="")
    return data.decode().strip()


def attribute_files(repo: Path, rev: str) -> list[tuple[str, str]]:
    """(path, blob) of every regular `.gitattributes` file in `rev`'s tree."""
    code, data, _ = _run_bytes(["ls-tree", "-r", "-z", "--full-tree", rev], repo)
    found = []
    for record in data.split(b"\0") if code == 0 else []:
        meta, _, path = record.partition(b"\t")
        parts = meta.split()
        regular = len(parts) == 3 and parts[0] in (b"100644", b"100755")
        if regular and path.rsplit(b"/", 1)[-1] == b".gitattributes":
            found.append((path.decode("utf-8", "surrogateescape"), parts[2].decode()))
    return found


def scratch_to(worktree: Path, rev: str) -> None:
    """Move a scratch worktree to exactly `rev` (files, index, detached HEAD), whatever a
    test left in it: only the files that differ are written."""
    run(["reset", "--hard", "--quiet", rev], worktree)
    run(["clean", "-ffdxq"], worktree)


# -- setup of a new lane's worktree (lanes/setup.py) --


def untracked_matching(repo: Path, patterns: Sequence[str]) -> list[str]:
    """Untracked paths of `repo`'s working tree matched by gitignore-style `patterns` (and
    by them alone: the repository's own ignore rules are asked separately, `ignored_in`).
    Files one by one; a nested repository as its folder, with a trailing `/`."""
    args = ["ls-files", "-z", "--others", "--ignored", *(f"--exclude={p}" for p in patterns)]
    code, data, err = _run_bytes(args, repo)
    if code != 0:
        raise OperationalError(
            "git-failed", f"git ls-files --others --ignored failed: {err}", hint="see git's message"
        )
    return [p.decode("utf-8", "surrogateescape") for p in data.split(b"\0") if p]


def ignored_in(worktree: Path, paths: Sequence[str]) -> set[str]:
    """Those of `paths` that git ignores in `worktree`, by its own rules; a path the
    worktree's index tracks is never among them (a trailing `/` asks about a folder)."""
    if not paths:
        return set()
    data = "".join(p + "\0" for p in paths).encode("utf-8", "surrogateescape")
    code, out, err = _run_bytes(["check-ignore", "-z", "--stdin"], worktree, data)
    if code not in (0, 1):  # 1: none of them is ignored
        raise OperationalError(
            "git-failed", f"git check-ignore failed: {err}", hint="see git's message"
        )
    return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}


# -- a lane's worktree as its agent left it --


@dataclass(frozen=True)
class WorktreeState:
    branch: str | None  # the branch HEAD is on; None: detached
    operation: str | None  # "rebase", "merge", "cherry-pick", "revert" left in progress
    rebasing: str | None  # the branch a rebase in progress is rewriting
    changes: list[str]  # `git status --porcelain` lines: uncommitted work


_IN_PROGRESS = (
    ("rebase-merge", "rebase"),
    ("rebase-apply", "rebase"),
    ("MERGE_HEAD", "merge"),
    ("CHERRY_PICK_HEAD", "cherry-pick"),
    ("REVERT_HEAD", "revert"),
)


def in_progress(git_dir: Path) -> tuple[str | None, str | None]:
    """(the operation a worktree's git dir shows in progress, the branch a rebase rewrites)."""
    for name, operation in _IN_PROGRESS:
        if (git_dir / name).exists():
            rebasing = None
            with contextlib.suppress(OSError):
                head = (git_dir / name / "head-name").read_text(encoding="utf-8").strip()
                rebasing = (
                    head.removeprefix("refs/heads/") if head.startswith("refs/heads/") else None
                )
            return operation, rebasing
    return None, None


def worktree_state(worktree: Path) -> WorktreeState:
    res = run(["rev-parse", "--absolute-git-dir", "--abbrev-ref", "HEAD"], worktree, check=False)
    lines = res.stdout.splitlines()
    if res.returncode != 0 or len(lines) < 2:
        raise OperationalError(
            "git-failed",
            f"git could not read the worktree {worktree}: {res.stderr.strip()}",
            hint="see git's message",
        )
    operation, rebasing = in_progress(Path(lines[0]))
    status = run(["--no-optional-locks", "status", "--porcelain"], worktree, check=False)
    changes = [line for line in status.stdout.splitlines() if line.strip()]
    return WorktreeState(lines[1] if lines[1] != "HEAD" else None, operation, rebasing, changes)
