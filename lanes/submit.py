"""Handing a lane to the integrator, refusing one that edited a contended file itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lanes import claims, fragments, git, guard, state
from lanes.config import Config
from lanes.errors import Refused

if TYPE_CHECKING:
    from lanes import coord


def _restore_commands(
    cfg: Config, wave: str, lane: str, base: str, paths: list[str], subjects: list[str]
) -> list[str]:
    """Shell commands, run in the lane's worktree, that rewrite the lane's history so that
    no commit touches `paths` (a commit on top that puts them back is not enough: the pass
    lands every commit): the commits since `base`, where the branch leaves main, collapse
    into the index (`git reset --soft`), the paths go back to what `base` has (a file the
    branch added is removed), and the rest is committed again, in one commit whose message
    lists the original subjects; nothing is committed when nothing else is left."""
    import shlex

    q = shlex.quote
    at_base = git.read_blobs(cfg.main_checkout, base, paths)
    there = [p for p in paths if at_base.get(p) is not None]
    added = [p for p in paths if p not in there]
    commands = [f"git reset --soft {q(base)}"]
    if there:
        commands.append(f"git checkout {q(base)} -- " + " ".join(map(q, there)))
    if added:
        commands.append("git rm -q -f --ignore-unmatch -- " + " ".join(map(q, added)))
    title = f"{wave}/{lane}: the work again, without contended files"
    body = "Rewritten from:\n" + "\n".join(f"- {subject}" for subject in subjects)
    commit = f"git commit -q -m {q(title)}" + (f" -m {q(body)}" if subjects else "")
    commands.append(f"{{ git diff --cached --quiet || {commit}; }}")  # only if staged
    return commands


@dataclass(frozen=True)
class SubmitResult:
    wave: str
    lane: str
    agent: str
    branch: str
    head: str
    commits: int
    fragments: int
    warnings: list[str]


def submit(cfg: Config, wave: str, lane: str) -> SubmitResult:
    claims.held(cfg, wave, lane)  # not-held before any lock file is made
    # Under the lane's lock: gc, reaping a stale lane, must see the submit or precede it.
    with claims.lane_lock(cfg, wave, lane):
        return _submit(cfg, wave, lane)


def _worktree_as_left(
    cfg: Config, wave: str, lane: str, record: claims.ClaimRecord, log: coord.EventLog
) -> list[str]:
    """What submitting would miss in the lane's worktree: a rebase, merge or cherry-pick
    left in progress, or HEAD off the lane's branch, is refused (the branch's tip is not
    the work yet); uncommitted changes are returned, for a warning. A worktree that is gone
    (its branch is submitted from elsewhere) has nothing to say."""
    worktree = Path(record.worktree)
    if not worktree.is_dir():
        return []
    seen = git.worktree_state(worktree)
    if seen.operation is None and seen.branch == record.branch:
        return seen.changes
    why = (
        f"a {seen.operation} is in progress in {worktree}"
        if seen.operation
        else f"its HEAD is {'detached' if seen.branch is None else 'on ' + seen.branch}, not "
        f"on {record.branch}"
    )
    log.append("submit-refused", lane, record.agent, reason="worktree-busy", why=why)
    finish = {
        "rebase": "finish it (git rebase --continue after git add of the fixed files) or undo "
        "it (git rebase --abort)",
        "merge": "lanes never lands merges: git merge --abort, then rebase instead",
        "cherry-pick": "git cherry-pick --continue (or --abort)",
        "revert": "git revert --continue (or --abort)",
    }.get(seen.operation or "", f"git switch {record.branch} in the worktree")
    raise Refused(
        "worktree-busy",
        f"lane {wave}/{lane} cannot be submitted: {why}, so its branch's tip is not the work "
        "you see there; nothing was submitted",
        hint=f"{finish}; then lanes submit again",
        worktree=str(worktree),
        operation=seen.operation,
        head_branch=seen.branch,
    )


def _submit(cfg: Config, wave: str, lane: str) -> SubmitResult:
    claim_dir, record, holder = claims.held_by(cfg, wave, lane)
    state.require_open(cfg, wave, lane, "be submitted")
    log = claims.ledger(cfg, wave)
    left = _worktree_as_left(cfg, wave, lane, record, log)
    shape = guard.unlandable(cfg, cfg.main, record.branch, record.branch)
    if shape is not None:  # an orphan branch, or one with a merge: the pass would bounce it
        commits = [sha for sha, _ in shape.commits]
        log.append("submit-refused", lane, record.agent, reason=shape.code, commits=commits)
        raise shape.refusal(f"lane {wave}/{lane}: ")
    found = guard.branch_violations(cfg, record.branch)
    if found:
        log.append(
            "submit-refused",
            lane,
            record.agent,
            files=[v.path for v in found],
            instead=[v.instead for v in found],
            commits=sorted({sha for v in found for sha, _ in v.commits}),
        )
        detail = "; ".join(f"{guard.describe(v)}: use {v.instead}" for v in found)
        repo = cfg.main_checkout
        base = git.merge_base(repo, cfg.main, record.branch) or ""
        tip = git.rev_parse(repo, record.branch) or ""
        subjects = [c.subject for c in git.replayed_changes(repo, base, tip)] if base else []
        paths = [v.path for v in found]
        restore = _restore_commands(cfg, wave, lane, base, paths, subjects) if base else []
        raise Refused(
            "touches-contended-surface",
            f"lane {wave}/{lane} changes files no lane may edit: {detail}",
            hint=(
                "rewrite the branch so that no commit touches them (one commit of the rest, "
                f"on top of where it leaves {cfg.main}): "
                + " && ".join(restore)
                + "; then ask for the change with the fragment named above "
                f"(to undo the rewrite: git reset --hard {tip})"
                if restore
                else f"rebase the branch onto {cfg.main}, then submit again"
            ),
            files=[
                {
                    "path": v.path,
                    "surface": v.surface,
                    "instead": v.instead,
                    "commits": [{"sha": sha, "subject": subj} for sha, subj in v.commits],
                }
                for v in found
            ],
            compared_with=base,
            restore=restore,
        )
    frags = fragments.read_all(claim_dir / claims.FRAGMENTS)  # refuse a corrupt fragment now
    head = git.rev_parse(cfg.main_checkout, record.branch) or ""
    ahead = git.commits_ahead(cfg.main_checkout, cfg.main, record.branch)
    asked = [e for _, f in frags if isinstance(f, fragments.ManifestFragment) for e in f.entries]
    warnings = fragments.unmet_entries(cfg, record.branch, asked)
    if left:
        shown = ", ".join(line[3:] for line in left[:10]) + (" ..." if len(left) > 10 else "")
        warnings.append(
            f"the worktree has {len(left)} uncommitted change(s), which are NOT submitted "
            f"(only the branch's commits are): {shown}; commit them and submit again if "
            "they are part of the work"
        )
    if ahead == 0 and not frags:  # handed over all the same: the agent may mean it
        warnings.append(
            f"lane {wave}/{lane} has no commit ahead of {cfg.main} and no fragment: the "
            "integrator will land nothing for it; commit your work first if you meant to"
        )
    # On a remote, the branch and the fragments go with the claim in one atomic push first:
    # an unreachable remote stops the submit here, with nothing recorded anywhere.
    from lanes import coord

    coord.for_config(cfg).submit(
        wave, lane, holder, record.branch, {path.name: path.read_bytes() for path, _ in frags}
    )
    # The ledger row is the commit point: once it is written the lane is submitted, and
    # whatever failed after it (the anchor on a full disk) is a warning, never an exit 1.
    row = log.append("submit", lane, record.agent, head=head, commits=ahead, fragments=len(frags))
    warnings = [*warnings, *row.warnings]
    return SubmitResult(wave, lane, record.agent, record.branch, head, ahead, len(frags), warnings)
