"""Claim, heartbeat, release and reap a lane.

Who holds a lane is decided by one thing only: the claim directory
`<inbox>/<wave>/<lane>/`, published with one atomic rename of a prepared directory that
already holds the claim record (a rename onto an existing, non-empty directory fails).
Releasing or reaping moves it, in one rename, into `<inbox>/<wave>/.archive/`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lanes import git, worktrees
from lanes.config import Config
from lanes.errors import BadInput, Contention, OperationalError, Refused
from lanes.ledger import Ledger
from lanes.names import check_agent, check_lane, check_wave

RECORD = "claim.json"
HEARTBEAT = "heartbeat"
FRAGMENTS = "fragments"
ARCHIVE = ".archive"


@dataclass(frozen=True)
class ClaimRecord:
    wave: str
    lane: str
    agent: str
    host: str
    pid: int
    time: str
    base: str
    worktree: str
    branch: str
    sparse: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ledger(cfg: Config, wave: str) -> Ledger:
    return Ledger(cfg.ledger_path(wave), wave, cfg.state_dir)


def read_record(claim_dir: Path) -> ClaimRecord | None:
    try:
        raw = json.loads((claim_dir / RECORD).read_text(encoding="utf-8"))
        return ClaimRecord(**raw)
    except (OSError, ValueError, TypeError):
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _publish(tmp: Path, target: Path) -> bool:
    """Rename the prepared claim directory onto the lane's name; False if someone has it."""
    try:
        os.rename(tmp, target)
        return True
    except OSError as exc:
        if exc.errno in (39, 17, 66):  # ENOTEMPTY, EEXIST (Linux), ENOTEMPTY (BSD)
            return False
        raise


def _discard(path: Path) -> None:
    """Remove a directory by first renaming it away, so its name is never seen half-empty."""
    if not path.exists():
        return
    trash = path.parent / f".trash-{uuid.uuid4().hex}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def archive(cfg: Config, wave: str, lane: str, why: str) -> Path:
    """Move a claim directory into the wave's archive in one rename: the lane is free."""
    src = cfg.claim_dir(wave, lane)
    dest_root = cfg.wave_dir(wave) / ARCHIVE
    dest_root.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dest = dest_root / f"{lane}-{why}-{stamp}-{uuid.uuid4().hex[:6]}"
    os.rename(src, dest)
    return dest


@dataclass(frozen=True)
class ClaimResult:
    wave: str
    lane: str
    agent: str
    worktree: str
    branch: str
    base: str
    claim_dir: str
    resumed: bool


def claim(
    cfg: Config,
    wave: str,
    lane: str,
    agent: str,
    base: str | None = None,
    sparse: Sequence[str] = (),
) -> ClaimResult:
    check_wave(wave)
    check_lane(lane)
    check_agent(agent)
    sparse = worktrees.check_sparse(sparse)
    if base is not None and not base.strip():
        raise BadInput("bad-base", "--base is empty", hint="omit --base, or name a commit")
    base_ref = base or cfg.main
    if base_ref.removeprefix("refs/heads/").startswith("lanes/"):
        raise BadInput(
            "bad-base",
            f"{base_ref!r} is another lane's branch: a lane never branches from another lane",
            hint=f"omit --base to branch from {cfg.main}; the other lane's work reaches you "
            "through main once it is integrated",
        )
    base_sha = git.rev_parse(cfg.main_checkout, base_ref)
    if base_sha is None and base is None:
        raise BadInput(
            "no-main",
            f"the integration branch {cfg.main!r} does not exist (no commits yet, or the "
            "repository's main branch has another name)",
            hint=f'commit to {cfg.main!r} first, or set main = "<branch>" in the lanes '
            "configuration",
        )
    if base_sha is None:
        raise BadInput(
            "bad-base",
            f"{base_ref!r} is not a commit in this repository",
            hint=f"omit --base to branch from {cfg.main}, or name an existing branch or commit",
        )
    _check_worktree_root(cfg)
    for folder in sparse:
        if not git.is_dir_at(cfg.main_checkout, base_sha, folder):
            raise BadInput(
                "bad-sparse",
                f"--sparse {folder!r} is not a directory in {base_ref}",
                hint="give a directory of the repository, like src/api (cone mode checks out "
                "whole directories)",
            )
    from lanes import state

    if state.lane_state(cfg, wave, lane) == "integrated":
        ledger(cfg, wave).append("claim-refused", lane, agent, reason="lane-integrated")
        raise Refused(
            "lane-integrated",
            f"lane {wave}/{lane} is already integrated into {cfg.main}",
            hint="claim a new lane name for new work",
        )

    claim_dir = cfg.claim_dir(wave, lane)
    path = cfg.worktree_path(wave, lane)
    branch = cfg.branch(wave, lane)
    record = ClaimRecord(
        wave,
        lane,
        agent,
        socket.gethostname(),
        os.getpid(),
        _now(),
        base_sha,
        str(path),
        branch,
        list(sparse),
    )
    wave_dir = cfg.wave_dir(wave)
    wave_dir.mkdir(parents=True, exist_ok=True)
    _exclude_inbox(cfg)
    tmp = wave_dir / f".claiming-{lane}-{uuid.uuid4().hex}"
    tmp.mkdir()
    (tmp / FRAGMENTS).mkdir()
    (tmp / RECORD).write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
    (tmp / HEARTBEAT).write_text(record.time + "\n", encoding="utf-8")

    log = ledger(cfg, wave)
    if not _publish(tmp, claim_dir):
        shutil.rmtree(tmp, ignore_errors=True)
        holder = read_record(claim_dir)
        holder_name = holder.agent if holder else "unknown"
        log.append("claim-refused", lane, agent, holder=holder_name, reason="claimed")
        raise Contention(
            "claimed",
            f"lane {wave}/{lane} is held by {holder_name}",
            hint="pick another lane, or wait until it is released or reaped",
            holder=holder_name,
            wave=wave,
            lane=lane,
        )
    kept = worktrees.kept_for(cfg, path, branch)
    try:
        if kept:
            new_branch = False
            if sparse:
                git.sparse_checkout_set(path, sparse)
        else:
            new_branch = worktrees.create(cfg, path, branch, base_sha, sparse)
    except BaseException as exc:
        # Nothing half-done: the claim is undone when its worktree cannot be made.
        _discard(claim_dir)
        reason = exc.code if isinstance(exc, OperationalError) else type(exc).__name__
        log.append("claim-refused", lane, agent, reason=reason, path=str(path))
        raise
    if not new_branch:
        # Resuming a released or reaped lane: its branch keeps its committed work.
        base_sha = git.merge_base(cfg.main_checkout, cfg.main, branch) or base_sha
    log.append(
        "claim",
        lane,
        agent,
        base=base_sha,
        worktree=str(path),
        branch=branch,
        resumed=not new_branch,
        kept_worktree=kept,
        sparse=list(sparse),
    )
    return ClaimResult(
        wave, lane, agent, str(path), branch, base_sha, str(claim_dir), not new_branch
    )


def held(cfg: Config, wave: str, lane: str) -> tuple[Path, ClaimRecord]:
    check_wave(wave)
    check_lane(lane)
    claim_dir = cfg.claim_dir(wave, lane)
    record = read_record(claim_dir)
    if record is None:
        raise Refused(
            "not-held",
            f"lane {wave}/{lane} is not held (never claimed, released or reaped)",
            hint=f"claim it with: lanes claim {wave} {lane} --agent ID",
        )
    return claim_dir, record


def _check_worktree_root(cfg: Config) -> None:
    """worktree_root must be a directory outside the main checkout (inside, every lane
    would show up in the checkout's `git status`)."""
    root = Path(cfg.settings.worktree_root)
    if not root.is_dir():
        raise BadInput(
            "bad-config",
            f"worktree_root {root} is not a directory",
            hint="create it, or set worktree_root to a directory such as /tmp",
        )
    real, checkout = root.resolve(), cfg.main_checkout.resolve()
    if real == checkout or checkout in real.parents:
        raise BadInput(
            "bad-config",
            f"worktree_root {root} is inside the main checkout {checkout}",
            hint="set worktree_root to a directory outside the repository, such as /tmp",
        )


def _not_integrated(cfg: Config, wave: str, lane: str, why: str, instead: str) -> None:
    from lanes import state

    if state.lane_state(cfg, wave, lane) == "integrated":
        raise Refused(
            "lane-integrated",
            f"lane {wave}/{lane} is integrated (its work is on {cfg.main}): {why}",
            hint=f"{instead}; claim a new lane for new work",
        )


def heartbeat(cfg: Config, wave: str, lane: str) -> dict[str, Any]:
    claim_dir, record = held(cfg, wave, lane)
    _not_integrated(cfg, wave, lane, "nothing to keep alive", "stop heartbeating")
    os.utime(claim_dir / HEARTBEAT)
    return {"wave": wave, "lane": lane, "agent": record.agent, "heartbeat": _now()}


def heartbeat_age(claim_dir: Path, now: float | None = None) -> float | None:
    try:
        return (now or time.time()) - (claim_dir / HEARTBEAT).stat().st_mtime
    except OSError:
        return None


@dataclass(frozen=True)
class ReleaseResult:
    wave: str
    lane: str
    agent: str
    archived_to: str
    worktree_removed: bool
    saved_patch: str | None
    saved_ignored: str | None


def lane_lock(cfg: Config, wave: str, lane: str) -> Any:
    """Held by whoever changes what a held lane is (release, gc, submit): two of them at
    once would, say, save the patch of a worktree the other is removing, over the good one,
    or reap a lane just submitted."""
    from filelock import FileLock

    path = cfg.state_dir / "claims" / check_wave(wave) / f"{check_lane(lane)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def release(cfg: Config, wave: str, lane: str, keep_worktree: bool = False) -> ReleaseResult:
    with lane_lock(cfg, wave, lane):
        claim_dir, record = held(cfg, wave, lane)
        _not_integrated(cfg, wave, lane, "nothing to release", "run lanes gc to remove it")
        retired = retire_worktree(cfg, claim_dir, record, "release", keep_worktree)
        dest = archive(cfg, wave, lane, "released")
        details = retired.details(dest)
        ledger(cfg, wave).append("release", lane, record.agent, archived_to=str(dest), **details)
    return ReleaseResult(
        wave,
        lane,
        record.agent,
        str(dest),
        retired.removed,
        details["saved_patch"],
        details["saved_ignored"],
    )


@dataclass(frozen=True)
class Retired:
    """What became of a lane's worktree: the files saved in the claim dir first."""

    removed: bool = False
    patch: Path | None = None  # uncommitted changes, untracked files included
    ignored: Path | None = None  # git-ignored files, as a tar.gz
    ignored_skipped: tuple[str, ...] = ()  # ignored files too big to keep

    def details(self, dest: Path) -> dict[str, Any]:
        """For the ledger row, with paths as they are once the claim dir is archived."""
        return {
            "worktree_removed": self.removed,
            "saved_patch": str(dest / self.patch.name) if self.patch else None,
            "saved_ignored": str(dest / self.ignored.name) if self.ignored else None,
            "ignored_not_saved": list(self.ignored_skipped[:20]),  # the first, by name
            "ignored_not_saved_count": len(self.ignored_skipped),
        }


def retire_worktree(
    cfg: Config, claim_dir: Path, record: ClaimRecord, why: str, keep: bool
) -> Retired:
    """Save uncommitted work into the claim dir, then remove the worktree (unless kept).

    The patch and the ignored files are written and fsynced before anything is removed:
    nothing is lost on a crash.
    """
    path = Path(record.worktree)
    if keep or not worktrees.is_worktree(path):
        if not keep:
            git.worktree_prune(cfg.main_checkout)  # it vanished: forget its registration
        return Retired()
    patch_path = claim_dir / f"{why}-uncommitted.patch"
    saved = worktrees.save_uncommitted(path, patch_path)
    ignored_path = claim_dir / f"{why}-ignored.tar.gz"
    count, skipped = worktrees.save_ignored(path, ignored_path)
    worktrees.remove(cfg, path)
    return Retired(
        True, patch_path if saved else None, ignored_path if count else None, tuple(skipped)
    )


def _exclude_inbox(cfg: Config) -> None:
    """Keep the inbox out of `git status` even before `lanes init` ignored it.

    Written to the repository's own info/exclude (never a tracked file); an appended line
    that a racing claimer also appends is harmless.
    """
    exclude = cfg.common_dir / "info" / "exclude"
    pattern = "/" + cfg.settings.inbox.strip("/") + "/"
    try:
        existing = exclude.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    if pattern in existing.splitlines():
        return
    exclude.parent.mkdir(parents=True, exist_ok=True)
    with open(exclude, "a", encoding="utf-8") as fh:
        fh.write(("" if not existing or existing.endswith("\n") else "\n") + pattern + "\n")
