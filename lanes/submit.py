"""Handing a lane to the integrator, refusing one that edited a contended file itself."""

from __future__ import annotations

from dataclasses import dataclass

from lanes import claims, fragments, git, state
from lanes.config import Config
from lanes.errors import Refused
from lanes.guard import branch_violations


def _restore_commands(cfg: Config, base: str, paths: list[str]) -> list[str]:
    """Shell commands, run in the lane's worktree, that undo the branch's change to `paths`:
    a file that existed at `base` is checked out from it, one the branch added is removed."""
    import shlex

    there = [p for p in paths if git.show_file(cfg.main_checkout, base, p) is not None]
    added = [p for p in paths if p not in there]
    commands = []
    if there:
        commands.append(f"git checkout {base[:12]} -- " + " ".join(map(shlex.quote, there)))
    if added:
        commands.append("git rm -q -- " + " ".join(map(shlex.quote, added)))
    commands.append("git commit -q -m 'leave contended files alone'")
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


def _submit(cfg: Config, wave: str, lane: str) -> SubmitResult:
    claim_dir, record = claims.held(cfg, wave, lane)
    state.require_open(cfg, wave, lane, "be submitted")
    log = claims.ledger(cfg, wave)
    found = branch_violations(cfg, record.branch)
    if found:
        log.append(
            "submit-refused",
            lane,
            record.agent,
            files=[v.path for v in found],
            instead=[v.instead for v in found],
        )
        detail = "; ".join(f"{v.path} ({v.surface}): use {v.instead}" for v in found)
        base = git.merge_base(cfg.main_checkout, cfg.main, record.branch) or ""
        restore = _restore_commands(cfg, base, [v.path for v in found])
        raise Refused(
            "touches-contended-surface",
            f"lane {wave}/{lane} changes files no lane may edit: {detail}",
            hint=f"put them back as they are where your branch leaves {cfg.main}: "
            + " && ".join(restore)
            + ", then drop fragments instead",
            files=[{"path": v.path, "surface": v.surface, "instead": v.instead} for v in found],
            compared_with=base,
            restore=restore,
        )
    frags = fragments.read_all(claim_dir / claims.FRAGMENTS)  # refuse a corrupt fragment now
    head = git.rev_parse(cfg.main_checkout, record.branch) or ""
    ahead = git.commits_ahead(cfg.main_checkout, cfg.main, record.branch)
    asked = [e for _, f in frags if isinstance(f, fragments.ManifestFragment) for e in f.entries]
    warnings = fragments.unmet_entries(cfg, record.branch, asked)
    log.append("submit", lane, record.agent, head=head, commits=ahead, fragments=len(frags))
    return SubmitResult(wave, lane, record.agent, record.branch, head, ahead, len(frags), warnings)
