"""The agent's worktree as the wave runner finds it, before and after its agent runs.

`leftover_work` says what keeps a lane from being submitted once its agent exited 0 (the
worktree gone, HEAD off the lane's branch, uncommitted changes); `back_on_branch` puts a
HEAD that left the branch back on it when that loses nothing (docs/runner.md, R15);
`resume_note` tells the agent of a resumed lane what the attempts before left. None of it
knows of the runner's processes or the terminal: lanes/runner.py asks, and says.
"""

from __future__ import annotations

import os
from pathlib import Path

from lanes import claims, git, worktrees
from lanes.config import Config

LOG = "agent.log"  # the agent's output, in the claim directory (the keeper writes it)
PREVIOUS_LOG = "agent.prev.log"  # the log of the run before, when the lane is resumed


def resume_note(
    cfg: Config, wave: str, lane: str, worktree: Path, branch: str, notes: list[str]
) -> str:
    """For the agent of a resumed lane: how the attempt before ended (the last `agent-exit`
    row, and a refused submit after it), the lane's commits, what is uncommitted."""
    rows = [ev for ev in claims.ledger(cfg, wave).events() if ev.lane == lane]
    start = next((ev for ev in reversed(rows) if ev.event == "agent-start"), None)
    end = next((ev for ev in reversed(rows) if ev.event == "agent-exit"), None)
    said = [
        "This lane was worked on before and is not finished. You continue on its branch, "
        "with what the attempt before left: read this before you start."
    ]
    if start is not None and (end is None or end.seq < start.seq):
        said.append(
            f"- The last attempt (started {start.time}) was cut off: the runner was stopped "
            "or killed while its agent ran, so no exit was recorded."
        )
    elif end is not None:
        code = end.details.get("code")
        reason = str(end.details.get("reason") or "")
        said.append(
            f"- The last attempt ended at {end.time}: {end.details.get('outcome', '?')}"
            + (f" (exit {code})" if isinstance(code, int) else "")
            + (f": {reason}" if reason else "")
        )
        refused = next(
            (ev for ev in reversed(rows) if ev.event == "submit-refused" and ev.seq > end.seq),
            None,
        )
        if refused is not None:
            d = refused.details
            why = str(d.get("reason") or "touches-contended-surface")
            if d.get("why"):
                why += f": {d['why']}"
            if d.get("files"):
                why += ": it changes files no lane may edit: " + ", ".join(map(str, d["files"]))
                why += " (instead: " + "; ".join(map(str, d.get("instead") or [])) + ")"
            said.append(f"- Then its submit was refused ({why}): your brief says how to fix that.")
    else:
        said.append("- No agent was started in it by lanes run before.")
    said.extend(f"- Before you started, lanes run found that {note}." for note in notes)
    log = git.run(
        ["log", "--format=%h %s", "-n", "10", f"{cfg.main}..{branch}"], worktree, check=False
    )
    subjects = log.stdout.splitlines() if log.returncode == 0 else []
    count = git.commits_ahead(worktree, cfg.main, branch)
    if count:
        said.append(f"- The branch {branch} holds {count} commit(s) not on {cfg.main}:")
        said.extend(f"    {line}" for line in subjects)
        if count > len(subjects):
            said.append(f"    ... and {count - len(subjects)} more")
    else:
        said.append(f"- The branch {branch} holds no commit beyond {cfg.main} yet.")
    paths = uncommitted(worktree)
    if paths:
        said.append(f"- Uncommitted in the worktree ({len(paths)}): they are the earlier work:")
        said.extend(f"    {p}" for p in paths[:30])
        if len(paths) > 30:
            said.append(f"    ... and {len(paths) - 30} more (git status)")
    else:
        said.append("- Nothing is uncommitted in the worktree.")
    logs = [cfg.claim_dir(wave, lane) / PREVIOUS_LOG]
    gone = next((ev for ev in reversed(rows) if ev.event in ("release", "reap")), None)
    if gone is not None and gone.details.get("archived_to"):
        logs.append(Path(str(gone.details["archived_to"])) / LOG)  # a claim before this one
    for path in logs:
        if path.is_file():
            said.append(f"- The earlier agent's output is in {path}.")
            break
    return "\n".join(said) + "\n"


def uncommitted(worktree: Path) -> list[str]:
    """Paths with changes not committed (untracked files too, git-ignored ones aside)."""
    res = git.run(["status", "--porcelain", "--untracked-files=all"], worktree)
    return [line[3:] for line in res.stdout.splitlines() if line.strip()]


def leftover_work(cfg: Config, worktree: Path, branch: str) -> tuple[str, str]:
    """("", "") when the worktree is on the lane's branch with nothing uncommitted
    (git-ignored files aside); else the outcome that makes and what is left, in words that
    follow "the agent exited 0 but"."""
    if not worktrees.is_ours(cfg, worktree):
        return "worktree-gone", f"its worktree {worktree} is gone"
    off = off_branch(worktree, branch)
    if off:
        return "off-branch", off
    paths = uncommitted(worktree)
    if paths:
        more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
        return "uncommitted", (
            f"left {len(paths)} uncommitted change(s) in {worktree}: " + ", ".join(paths[:5]) + more
        )
    return "", ""


def off_branch(worktree: Path, branch: str) -> str:
    """'' when the worktree's HEAD is the lane's branch; else where it is, in words."""
    head = git.head_branch(worktree)
    if head == f"refs/heads/{branch}":
        return ""
    sha = git.rev_parse(worktree, "HEAD")
    at = f" at {sha[:12]}" if sha else ""
    where = "detached" + at if head is None else f"on branch {head.removeprefix('refs/heads/')}"
    return f"its worktree's HEAD is {where}, not on the lane's branch {branch}"


_IN_PROGRESS = {  # what a file in the git dir says is under way, and how to end it
    "rebase-merge": ("a rebase", "git rebase --continue, or --abort"),
    "rebase-apply": ("a rebase (or git am)", "git rebase --continue, or --abort"),
    "MERGE_HEAD": ("a merge", "git merge --abort (lanes lands no merge: rebase instead)"),
    "CHERRY_PICK_HEAD": ("a cherry-pick", "git cherry-pick --continue, or --abort"),
    "REVERT_HEAD": ("a revert", "git revert --continue, or --abort"),
    "BISECT_LOG": ("a bisect", "git bisect reset"),
}


def back_on_branch(worktree: Path, branch: str, change: bool = True) -> tuple[bool, str]:
    """Put a worktree whose HEAD left the lane's branch (`off_branch`) back on it, only
    when that loses nothing: HEAD's commit is the branch's tip or descends from it (the
    branch is then fast-forwarded to it), no rebase, merge or the like is in progress, and
    the branch is checked out nowhere else; neither the files nor the index change. With
    `change` False, only says what it would do. (True, what was done, or '' when HEAD was
    on the branch), or (False, why it cannot be and how to fix it by hand)."""
    if not off_branch(worktree, branch):
        return True, ""
    ref = f"refs/heads/{branch}"
    head = git.rev_parse(worktree, "HEAD")
    tip = git.rev_parse(worktree, ref)
    res = git.run(["rev-parse", *(f"--git-path={n}" for n in _IN_PROGRESS)], worktree)
    for name, path in zip(_IN_PROGRESS, res.stdout.splitlines(), strict=False):
        if os.path.lexists(worktree / path):
            what, end = _IN_PROGRESS[name]
            return False, (
                f"{what} is in progress there: end it in {worktree} ({end}), then git switch "
                f"{branch} if HEAD is still off it"
            )
    if head is None or tip is None:
        return False, f"{'HEAD' if head is None else branch} names no commit: git switch {branch}"
    ahead = git.commits_ahead(worktree, tip, head)  # on HEAD, not on the branch
    behind = git.commits_ahead(worktree, head, tip)  # on the branch, not at HEAD
    listed = git.run(["worktree", "list", "--porcelain"], worktree).stdout
    if f"\nbranch {ref}\n" in f"\n{listed}\n":
        return False, (
            f"{branch} is checked out in another worktree: switch that one to another "
            f"branch, then git switch {branch} in {worktree}"
        )
    if behind and ahead:
        return False, (
            f"HEAD has {ahead} commit(s) the branch lacks, and the branch has {behind} that "
            "HEAD lacks: an agent started there would leave commits behind. To keep HEAD's: git "
            f"switch -C {branch} in {worktree} (then cherry-pick the branch's own back); to "
            f"go back to the branch as it is: git switch {branch}"
        )
    if behind:
        return False, (
            f"HEAD is {behind} commit(s) behind the branch's tip: an agent started there "
            f"would work without them; git switch {branch} in {worktree} (HEAD holds no "
            "commit the branch lacks; the files become the branch's)"
        )
    moved = f" ({branch} fast-forwarded by HEAD's {ahead} commit(s))" if ahead else ""
    if not change:
        return True, f"lanes run puts it back on {branch}{moved} when it runs again"
    why = "lanes run: back on the lane's branch"
    if ahead:
        git.run(["update-ref", "-m", why, ref, head, tip], worktree)
    git.run(["symbolic-ref", "-m", why, "HEAD", ref], worktree)
    return True, f"it was put back on {branch}{moved}; no file changed"
