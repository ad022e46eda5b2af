"""Garbage collection: reap stale claims and remove worktrees nobody needs, losing nothing.

A stale lane's work (every change on its disk, untracked, ignored and nested repositories
too) is saved into its claim directory, read back and checked, before its worktree is
removed; its branch, which holds its commits, is kept. A lane whose work cannot be saved
is left as it is and reported, and gc goes on with the others.

On a remote (docs/remote.md) a lane is stale when its claim ref's last commit (the last
heartbeat) is older than `stale_after`, whichever machine holds it. A lane held here is
saved and reaped as above, its claim ref deleted with a lease; a lane held on another
machine is reaped by deleting its claim ref alone, with a lease pinned to the commit read:
its worktree, its saved work and its branch are on that machine, and are never touched from
here (a pushed branch stays on the remote). That machine, once back, finds its claim gone
and archives its claim directory (docs/remote.md, "Faults").
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanes import claims, coord, git, state, worktrees
from lanes.config import Config
from lanes.errors import Contention, LanesError, OperationalError, Refused


@dataclass(frozen=True)
class GcAction:
    wave: str
    lane: str
    action: str  # reap, remove-worktree, delete-branch or remove-worktree-and-branch
    reason: str
    worktree: str
    saved_patch: str | None = None
    worktree_vanished: bool = False
    saved_ignored: str | None = None  # the git-ignored files and nested repositories, a tar.gz
    saved_nested: list[str] = field(default_factory=list)  # nested repositories, whole
    saved_against: str | None = None  # the commit the patch applies to (HEAD when saved)


@dataclass(frozen=True)
class GcFailure:
    """A lane gc could not finish: nothing of it was removed."""

    wave: str
    lane: str
    error: str  # the error code, e.g. save-check-failed
    message: str
    partial_save: list[str] = field(default_factory=list)  # a save that failed its check


@dataclass
class GcReport:
    dry_run: bool
    actions: list[GcAction] = field(default_factory=list)
    failed: list[GcFailure] = field(default_factory=list)


def gc(cfg: Config, dry_run: bool = False) -> GcReport:
    """Collect every wave. Raises `gc-incomplete` (with the whole report) after the other
    lanes are done when a lane could not be finished: no command reports work it did not do."""
    report = GcReport(dry_run)
    now = time.time()
    c = coord.for_config(cfg)
    for wave in state.waves(cfg):
        held = c.holders(wave) if c.kind != "local" else None
        for lane, hist in sorted(state.histories(cfg, wave, held).items()):
            try:
                if held is not None and hist.state == "claimed" and lane in held:
                    action = _reap_remote_if_stale(cfg, c, wave, lane, held[lane], now, dry_run)
                else:
                    action = _collect(cfg, wave, lane, hist, now, dry_run)
            except LanesError as exc:  # a save that failed or did not check: report, go on
                report.failed.append(_failure(wave, lane, exc))
                continue
            if action is not None:
                report.actions.append(action)
        if not dry_run:
            _sweep_leftovers(cfg.wave_dir(wave), now - cfg.stale_after_seconds)
    if not dry_run:
        worktrees.sweep_trash(cfg)  # worktrees a killed remover had moved away
        git.worktree_prune(cfg.main_checkout)  # registrations whose directory vanished
    if report.failed:
        raise _incomplete(report)
    return report


def _collect(
    cfg: Config, wave: str, lane: str, hist: state.LaneHistory, now: float, dry_run: bool
) -> GcAction | None:
    record = claims.read_record(cfg.claim_dir(wave, lane))
    if record is None:
        return None
    if hist.state == "claimed":
        return _reap_if_stale(cfg, wave, lane, now, dry_run)
    if hist.state == "integrated":
        landed = (hist.submit_details or {}).get("head")
        with _locked(cfg, wave, lane, dry_run):
            if not dry_run:
                claims.free_port(cfg, record)  # its work is on main: its ports are free
            return _finish_integrated(cfg, wave, lane, record, landed, dry_run)
    return None


def _failure(wave: str, lane: str, exc: LanesError) -> GcFailure:
    partial = [str(p) for p in exc.extra.get("partial_save", [])]
    return GcFailure(wave, lane, exc.code, exc.message, partial)


def _incomplete(report: GcReport) -> OperationalError:
    done = ", ".join(f"{a.wave}/{a.lane} ({a.action})" for a in report.actions) or "nothing"
    failed = "; ".join(f"{f.wave}/{f.lane} ({f.error}: {f.message})" for f in report.failed)
    return OperationalError(
        "gc-incomplete",
        f"gc did {done}, but could not finish {len(report.failed)} lane(s), left as they "
        f"were: {failed}",
        dry_run=report.dry_run,
        actions=[dataclasses.asdict(a) for a in report.actions],
        failed=[dataclasses.asdict(f) for f in report.failed],
    )


def _sweep_leftovers(wave_dir: Path, older_than: float) -> None:
    """Half-built claim dirs and trash a killed claimer left behind; never a live claim.

    A `.claiming-*` dir was never published (the rename did not happen), so no one holds it.
    """
    for leftover in [*wave_dir.glob(".claiming-*"), *wave_dir.glob(".trash-*")]:
        try:
            if leftover.is_dir() and leftover.stat().st_mtime < older_than:
                shutil.rmtree(leftover)
        except OSError:
            continue  # another gc got there first


def _locked(cfg: Config, wave: str, lane: str, dry_run: bool) -> Any:
    """The lane's lock; none for a dry run, which must not even create the lock file."""
    return contextlib.nullcontext() if dry_run else claims.lane_lock(cfg, wave, lane)


def _reap_if_stale(cfg: Config, wave: str, lane: str, now: float, dry_run: bool) -> GcAction | None:
    """Reap the lane if it is still held and stale once its lock is ours: its holder may
    have released it, or heartbeated, since the ledger was read."""
    with _locked(cfg, wave, lane, dry_run):
        claim_dir = cfg.claim_dir(wave, lane)
        record = claims.read_record(claim_dir)
        age = claims.heartbeat_age(claim_dir, now)
        if record is None or age is None or age <= cfg.stale_after_seconds:
            return None
        if state.lane_state(cfg, wave, lane) != "claimed":
            return None  # submitted since the ledger was read: the integrator's now
        reason = f"no heartbeat for {int(age)}s (stale_after {cfg.settings.stale_after})"
        return _reap(cfg, wave, lane, record, reason, dry_run)


def _reap_remote_if_stale(
    cfg: Config,
    c: coord.Coord,
    wave: str,
    lane: str,
    holder: coord.Holder,
    now: float,
    dry_run: bool,
) -> GcAction | None:
    """Reap a lane whose claim ref has not moved for `stale_after`, from any machine; a
    heartbeat, submit or release since it was read makes the lease fail: not reaped."""
    if holder.submitted or holder.beat is None or holder.token == "":
        return None  # submitted: the integrator's; no time read: never judged stale
    age = now - holder.beat
    if age <= cfg.stale_after_seconds:
        return None
    reason = f"no heartbeat for {int(age)}s (stale_after {cfg.settings.stale_after})"
    record = claims.read_record(cfg.claim_dir(wave, lane))
    if record is not None and record.to_json() == holder.record:
        with _locked(cfg, wave, lane, dry_run):  # held here: saved, then reaped
            if not dry_run:
                # Read again under the lock: a release or another gc may have retired it,
                # or its holder beaten, since it was read; its worktree is then not ours.
                now_record = claims.read_record(cfg.claim_dir(wave, lane))
                there = c.holder(wave, lane)
                if now_record != record or there is None or there.token != holder.token:
                    return None
            return _reap(cfg, wave, lane, record, reason, dry_run, holder)
    raw = holder.record or {}
    host, where = str(raw.get("host", "")), str(raw.get("worktree", ""))
    if dry_run:
        return GcAction(wave, lane, "reap", reason, where)
    row = coord.PendingEvent(
        "reap",
        lane,
        holder.agent,
        {
            "reason": reason,
            "held_on": host,
            "worktree": where,
            "worktree_left_on": host,  # nothing of that machine's disk is touched from here
            "branch_kept": str(raw.get("branch", cfg.branch(wave, lane))),
            "claim": holder.token,
        },
    )
    try:  # the ref's delete and the row in one push
        c.retire(wave, lane, holder, "reaped", lambda _dest: row)
    except (Contention, Refused):
        return None  # it heartbeated, or was released, since it was read: alive
    return GcAction(wave, lane, "reap", reason + f", held on {host or 'another machine'}", where)


def _reap(
    cfg: Config,
    wave: str,
    lane: str,
    record: claims.ClaimRecord,
    reason: str,
    dry_run: bool,
    holder: coord.Holder | None = None,
) -> GcAction:
    path = Path(record.worktree)
    vanished = not worktrees.is_ours(cfg, path)
    if dry_run:
        return GcAction(wave, lane, "reap", reason, str(path), None, vanished)
    claim_dir = cfg.claim_dir(wave, lane)
    retired = claims.retire_worktree(cfg, claim_dir, record, "reap", keep=False)

    def row(dest: Path) -> coord.PendingEvent:  # on a remote, in the push deleting the ref
        return coord.PendingEvent(
            "reap",
            lane,
            record.agent,
            {
                "reason": reason,
                "archived_to": str(dest),
                "worktree_vanished": vanished,
                "branch_kept": record.branch,
                **retired.details(dest),
            },
        )

    # Locally the holder is the record read here; on a remote the claim ref read, pinned.
    held = holder or coord.Holder(record.agent, record.to_json())
    dest = coord.for_config(cfg).retire(wave, lane, held, "reaped", row)
    details = retired.details(dest)
    saved = details["saved_patch"]
    claims.free_port(cfg, record)
    return GcAction(
        wave,
        lane,
        "reap",
        reason,
        str(path),
        saved,
        vanished,
        details["saved_ignored"],
        details["saved_nested"],
        details["saved_against"],
    )


def _finish_integrated(
    cfg: Config,
    wave: str,
    lane: str,
    record: claims.ClaimRecord,
    landed: str | None,
    dry_run: bool,
) -> GcAction | None:
    """Remove an integrated lane's worktree, and its branch when the branch is exactly
    what landed (its work is on main; a commit made after the submit keeps the branch)."""
    has_worktree = worktrees.is_ours(cfg, Path(record.worktree))
    tip = git.rev_parse(cfg.main_checkout, record.branch)
    drop_branch = tip is not None and tip == landed
    if not (has_worktree or drop_branch):
        return None
    reason = "lane is integrated"
    patch = ignored = against = None
    nested: list[str] = []
    if not dry_run:
        if has_worktree:
            retired = claims.retire_worktree(
                cfg, cfg.claim_dir(wave, lane), record, "gc", keep=False
            )
            patch = str(retired.patch) if retired.patch else None
            ignored = str(retired.ignored) if retired.ignored else None
            nested, against = list(retired.nested), retired.against
        if drop_branch:
            git.worktree_prune(cfg.main_checkout)  # a vanished worktree still pins it
            drop_branch = git.delete_branch(cfg.main_checkout, record.branch)
            if not (has_worktree or drop_branch):
                return None
    action = "remove-worktree" if has_worktree else "delete-branch"
    if has_worktree and drop_branch:
        action = "remove-worktree-and-branch"
    return GcAction(
        wave, lane, action, reason, record.worktree, patch, False, ignored, nested, against
    )
