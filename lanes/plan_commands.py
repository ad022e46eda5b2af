"""The plan's commands, checked before the wave runner claims anything (docs/runner.md,
"A command given as a path"; decision R12).

`check(cfg, wave, plan, host)` raises `bad-plan` for the first lane whose program cannot
be started where it will run: a bare name not on PATH, an absolute path that is not an
executable file, a relative one not committed with its executable bit in the tree the
lane's worktree will have (or not executable in the worktree of a lane this runner
resumes). Only files are read: not the ledger (on a remote, reading it writes its
rendering in the inbox).
"""

from __future__ import annotations

import os
from pathlib import Path

from lanes import claims, git, worktrees
from lanes.config import Config
from lanes.errors import BadInput
from lanes.wave_plan import Plan, PlannedLane

_HINT_PATH = "install it, or set PATH in the lane's env, or give its absolute path"
_HINT_ABSOLUTE = "give the path of an executable file (chmod +x it)"
_HINT_RELATIVE = (
    "a relative path runs in the lane's worktree, which is checked out from main (or from "
    "the lane's branch): commit the program there with its executable bit, or give an "
    "absolute path; for a program [setup] makes in the worktree, run it through one on "
    'PATH, e.g. command = ["sh", "-c", "exec .venv/bin/agent -p"]'
)


def _executable(path: str) -> str:
    """'' when `path` is a file this user may execute; else what it is, in words."""
    if not os.path.lexists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isfile(path):
        return "is not a regular file" + (" (a broken symlink)" if os.path.islink(path) else "")
    if not os.access(path, os.X_OK):
        return f"is not executable (chmod +x {path})"
    return ""


def _in_tree(repo: Path, rev: str, rel: str, hops: int = 0) -> str:
    """'' when `rel` is an executable file in `rev`'s tree (a symlink followed, inside the
    tree or to an executable file outside it); else what it is, in words."""
    res = git.run(["ls-tree", "--full-tree", "-z", rev, "--", rel], repo, check=False)
    entry = res.stdout.split("\0")[0] if res.returncode == 0 else ""
    if not entry:
        return f"is not in the tree of {rev}"
    mode, kind, sha = entry.split("\t", 1)[0].split()
    if mode == "100755":
        return ""
    if mode == "120000" and hops < 8:
        target = git.run(["cat-file", "blob", sha], repo).stdout
        if target.startswith("/"):
            what = _executable(target)
            return f"is a symlink to {target}, which {what}" if what else ""
        nxt = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if nxt == ".." or nxt.startswith("../"):
            return f"is a symlink out of the worktree ({target})"
        return _in_tree(repo, rev, nxt, hops + 1)
    if mode == "100644":
        return (
            f"is not executable in {rev} (mode 100644: git update-index --chmod=+x {rel}, "
            "then commit it)"
        )
    return f"is a {kind} in {rev}, not an executable file"


def command_problem(cfg: Config, wave: str, pl: PlannedLane, host: str) -> str:
    """'' when the lane's program can be started where it will run; else why not. A
    bare name is looked up on PATH (the plan's, if its env sets one); an absolute path
    must be an executable file; a relative one is relative to the lane's worktree, so
    it is looked for in the worktree when this runner's agent holds the lane with it
    (a resume), else in the tree a claim would check out (the lane's branch when it
    exists, else main's tip): committed, with its executable bit. Only files are read
    (not the ledger: on a remote, reading it writes its rendering in the inbox)."""
    import shutil

    program = pl.command[0]
    if "/" not in program:
        path_var = pl.env.get("PATH", os.environ.get("PATH", os.defpath))
        return "" if shutil.which(program, path=path_var) else "is not a program on PATH"
    if os.path.isabs(program):
        return _executable(program)
    rel = os.path.normpath(program)
    if rel == ".." or rel.startswith("../"):
        return "points outside the lane's worktree"
    branch = cfg.branch(wave, pl.name)
    record = claims.read_record(cfg.claim_dir(wave, pl.name))
    if record is not None:
        if (record.agent, record.host) != (pl.agent, host):
            return ""  # someone else's: left alone, not run
        worktree = Path(record.worktree)
        if worktrees.is_ours(cfg, worktree):
            what = _executable(str(worktree / rel))
            return f"{what} in the lane's worktree {worktree}" if what else ""
    rev = branch if git.branch_exists(cfg.main_checkout, branch) else cfg.main
    return _in_tree(cfg.main_checkout, rev, rel)


def check(cfg: Config, wave: str, plan: Plan, host: str) -> None:
    """`bad-plan` for the first lane whose program cannot be started (`command_problem`);
    nothing is claimed or written before it."""
    for pl in plan.lanes:
        what = command_problem(cfg, wave, pl, host)
        if what:
            program = pl.command[0]
            raise BadInput(
                "bad-plan",
                f"plan {plan.path}: lane[{pl.index}].command (lane {pl.name}): "
                f"{program!r} {what}; nothing was claimed",
                hint=_HINT_PATH
                if "/" not in program
                else _HINT_ABSOLUTE
                if os.path.isabs(program)
                else _HINT_RELATIVE,
                keys=[f"lane[{pl.index}].command"],
            )
