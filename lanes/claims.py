"""Claim, heartbeat, release and reap a lane.

Who holds a lane is decided by one thing only: the claim, published through the
coordination (lanes/coord/): locally the claim directory `<inbox>/<wave>/<lane>/`, one
atomic rename of a prepared directory that already holds the claim record; on a remote
the claim ref, created only if absent. Releasing or reaping frees it (locally: one rename
into `<inbox>/<wave>/.archive/`; remotely the ref deleted with a lease on the commit read).
The claim directory is the lane's local working area in both: fragments, saved work.
"""

from __future__ import annotations

import contextlib
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
from typing import TYPE_CHECKING, Any

from lanes import coord, git, saves, worktrees
from lanes.config import Config
from lanes.coord import local
from lanes.errors import BadInput, Contention, LanesError, OperationalError, Refused
from lanes.failpoint import failpoint
from lanes.names import check_agent, check_lane, check_wave

if TYPE_CHECKING:
    from lanes import setup as setup_mod  # imported when a claim has something to set up

RECORD = "claim.json"
HEARTBEAT = "heartbeat"
FRAGMENTS = "fragments"
ARCHIVE = local.ARCHIVE


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
    port: int | None = None  # the first of the lane's [setup] ports; None: no ports

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        if doc["port"] is None:
            del doc["port"]  # a record without ports reads as lanes always wrote it
        return doc


def ledger(cfg: Config, wave: str) -> coord.EventLog:
    """The wave's ledger, wherever the coordination keeps it."""
    return coord.for_config(cfg).ledger(wave)


def read_record(claim_dir: Path, problems: list[str] | None = None) -> ClaimRecord | None:
    """The lane's claim record; None when there is none (never claimed, released, reaped)
    or when it cannot be trusted, and then, if `problems` is given, the reason goes into it.

    What is read back from disk is checked as strictly as what lanes writes: every field
    there with its type and nothing else, the names valid and those of the claim directory,
    the lane's own branch, a worktree path of this lane, a commit id, a pid, sparse paths
    inside the repository. A record that fails is never acted on (gc does not reap it,
    release refuses it) and `lanes status` says why. A `time` that is not an ISO 8601 time
    is only noted in `problems`: nothing but status reads it, so its holder keeps the lane.
    """
    import dataclasses
    import re

    path = claim_dir / RECORD
    why: list[str] = []
    raw: Any = None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        why.append(f"cannot be read ({exc.strerror})")
    except ValueError:  # not UTF-8, or not JSON
        why.append("is not JSON")
    if not why and not isinstance(raw, dict):
        why.append("is not a JSON object")
    if not why:
        known = {f.name: f for f in dataclasses.fields(ClaimRecord)}
        required = [
            name
            for name, f in known.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in raw]
        unknown = sorted(str(name) for name in raw if name not in known)
        if missing:
            why.append("lacks " + ", ".join(missing))
        if unknown:
            why.append("has fields lanes does not write: " + ", ".join(unknown)[:200])
        for name, value in raw.items():
            kind = str(known[name].type) if name in known else ""
            fits = (
                isinstance(value, str)
                if kind == "str"
                else type(value) is int
                if kind == "int"
                else isinstance(value, list) and all(isinstance(x, str) for x in value)
                if kind == "list[str]"
                else value is None or type(value) is int
                if kind == "int | None"
                else True  # a field of a type not listed here is checked below, if at all
            )
            if not fits:
                why.append(f"{name} is {json.dumps(value)[:60]}, not of type {kind}")
    if not why:
        wave, lane = raw["wave"], raw["lane"]
        if (wave, lane) != (claim_dir.parent.name, claim_dir.name):
            why.append(
                f"names the lane {wave!r}/{lane!r}, but it is the claim of "
                f"{claim_dir.parent.name}/{claim_dir.name}"
            )
        try:
            check_wave(wave)
            check_lane(lane)
            check_agent(raw["agent"])
            worktrees.check_sparse(raw.get("sparse", []))
        except BadInput as exc:
            why.append(exc.message)
        worktree = raw["worktree"]
        if raw["branch"] != f"lanes/{wave}/{lane}":
            why.append(f"branch {raw['branch'][:80]!r} is not the lane's (lanes/{wave}/{lane})")
        if (
            not os.path.isabs(worktree)
            or os.path.normpath(worktree) != worktree
            or not os.path.basename(worktree).endswith(f"-{wave}-{lane}")
            or any(c in worktree for c in "\0\n\r")
        ):
            why.append(f"worktree {worktree[:120]!r} is not a worktree path of this lane")
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", raw["base"]):
            why.append(f"base {raw['base'][:80]!r} is not a commit id")
        if raw["pid"] <= 0:
            why.append(f"pid {raw['pid']} is not a process id")
        if raw.get("port") is not None and not 1 <= raw["port"] <= 65535:
            why.append(f"port {raw['port']} is not a port (1 to 65535)")
        if not raw["host"].isprintable() or len(raw["host"]) > 255:
            why.append("host is not a host name")
    if why:
        if problems is not None:
            problems.append(f"claim record {path} " + "; ".join(why))
        return None
    try:
        datetime.fromisoformat(raw["time"])
    except ValueError:
        if problems is not None:
            problems.append(
                f"claim record {path}: time {raw['time'][:40]!r} is not an ISO 8601 time "
                "(like 2026-01-31T12:00:00Z)"
            )
    return ClaimRecord(**raw)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_publish = local.publish
_discard = local.discard
archive = local.archive


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
    port: int | None = None  # LANES_PORT: the first of the lane's ports ([setup] ports)
    ports: list[int] = field(default_factory=list)
    setup: setup_mod.SetupReport | None = None  # None: nothing to set up


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
    on_main = f"refs/heads/{cfg.main}"
    if base is not None and not git.is_ancestor(cfg.main_checkout, base_sha, on_main):
        # A lane branches from main, never from another lane: a commit main does not hold
        # (another lane's, by its sha, a tag, a reflog entry) is refused, however named.
        raise BadInput(
            "bad-base",
            f"--base {base!r} ({base_sha[:12]}) is not on {cfg.main}: a lane branches from "
            f"{cfg.main} (its tip or an older commit of it), never from another lane's work",
            hint=f"omit --base to branch from {cfg.main}, or name a commit {cfg.main} holds; "
            "another lane's work reaches you through main once it is integrated",
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

    todo = _setup_plan(cfg)  # read before anything is claimed: bad input changes nothing
    claim_dir = cfg.claim_dir(wave, lane)
    path = cfg.worktree_path(wave, lane)
    branch = cfg.branch(wave, lane)
    stamp, count = _now(), cfg.settings.setup.ports
    c = coord.for_config(cfg)
    log = c.ledger(wave)
    wave_dir = cfg.wave_dir(wave)
    wave_dir.mkdir(parents=True, exist_ok=True)
    _exclude_inbox(cfg)
    tmp = wave_dir / f".claiming-{lane}-{uuid.uuid4().hex}"
    tmp.mkdir()
    port: int | None = None
    if count:
        from lanes import ports

        try:  # the slot is live while `tmp` exists, then while the claim dir holds this claim
            port = ports.allocate(cfg, wave, lane, agent, os.getpid(), stamp, tmp.name)
            failpoint("claim-port-taken")
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OperationalError) and exc.code == "no-free-port":
                taken = c.holder(wave, lane)
                if taken is not None:  # the lane is held anyway: that is the answer
                    raise _taken(log, wave, lane, agent, taken) from None
                log.append("claim-refused", lane, agent, reason="no-free-port")
            raise
    record = ClaimRecord(
        wave,
        lane,
        agent,
        socket.gethostname(),
        os.getpid(),
        stamp,
        base_sha,
        str(path),
        branch,
        list(sparse),
        port,
    )

    try:
        (tmp / FRAGMENTS).mkdir()
        (tmp / RECORD).write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
        (tmp / HEARTBEAT).write_text(record.time + "\n", encoding="utf-8")
        won, holder = c.publish_claim(wave, lane, record.to_json(), tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _drop_port(cfg, port, tmp.name)
        raise
    if not won:
        shutil.rmtree(tmp, ignore_errors=True)
        _drop_port(cfg, port, tmp.name)
        raise _taken(log, wave, lane, agent, holder)
    held = [holder]  # the hold as it is now: a heartbeat during a long setup moves it (remote)

    def refuse(exc: BaseException, **details: Any) -> None:
        """Nothing half-done: the claim is undone, its port given back."""
        c.undo_claim(wave, lane, held[0])
        _drop_port(cfg, port, tmp.name)
        reason = exc.code if isinstance(exc, LanesError) else type(exc).__name__
        log.append("claim-refused", lane, agent, reason=reason, path=str(path), **details)

    if count and holder.record is not None and holder.record.get("port") != port:
        # Remote: an earlier claim of this agent here, killed half-way, was finished
        # instead of ours (lanes/coord/remote.py): its record, and so its port, hold.
        from lanes import ports

        try:
            port = ports.adopt(cfg, wave, lane, tmp.name, holder.record)
        except BaseException as exc:
            refuse(exc)
            raise
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
        refuse(exc)
        raise
    if not new_branch:
        # Resuming a released or reaped lane: its branch keeps its committed work.
        base_sha = git.merge_base(cfg.main_checkout, cfg.main, branch) or base_sha
    report = None
    if todo is not None:
        from lanes import brief, setup

        def beat() -> None:
            held[0] = c.heartbeat(wave, lane, held[0])
            if c.kind != "local":
                local.touch_heartbeat(claim_dir / HEARTBEAT, wave, lane)

        env = brief.env_of(cfg, record, base_sha)  # what `lanes env` prints, one home
        try:
            report = setup.run(cfg, todo, path, claim_dir, env, beat)
        except BaseException as exc:
            # Either the lane is held with its worktree set up, or it is not held: the
            # worktree this claim made goes (a kept one stays, as it was before the claim).
            if not kept:
                with contextlib.suppress(LanesError, OSError):
                    worktrees.remove(cfg, path, branch if new_branch else None)
            kept_log = setup.keep_log(cfg, wave, lane, claim_dir)
            if isinstance(exc, setup.SetupError):
                failed = setup.failure(exc, wave, lane, kept_log)
                refuse(failed, step=exc.step, log=failed.extra["log"], **exc.facts)
                raise failed from None
            refuse(exc)
            raise
    extra: dict[str, Any] = {}
    if port is not None:
        extra["port"] = port
    if report is not None:
        extra["setup"] = {
            "copied": report.copied,
            "linked": report.linked,
            "commands": len(report.commands),
            "skipped": report.skipped_count,
        }
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
        **extra,
    )
    return ClaimResult(
        wave,
        lane,
        agent,
        str(path),
        branch,
        base_sha,
        str(claim_dir),
        not new_branch,
        port,
        list(range(port, port + count)) if port is not None else [],
        report,
    )


def _taken(
    log: coord.EventLog, wave: str, lane: str, agent: str, holder: coord.Holder
) -> Contention:
    holder_name = holder.agent or "unknown"
    log.append("claim-refused", lane, agent, holder=holder_name, reason="claimed")
    return Contention(
        "claimed",
        f"lane {wave}/{lane} is held by {holder_name}",
        hint="pick another lane, or wait until it is released or reaped",
        holder=holder_name,
        wave=wave,
        lane=lane,
    )


def _setup_plan(cfg: Config) -> setup_mod.Plan | None:
    """What setup the claim does; None (at the cost of one lstat, no import and no git) for
    a repository without [setup] copy, link, commands or a .worktreeinclude."""
    s = cfg.settings.setup
    if not (s.copy_ or s.link or s.commands) and not os.path.lexists(
        cfg.main_checkout / ".worktreeinclude"
    ):
        return None
    from lanes import setup

    return setup.plan(cfg)


def free_port(cfg: Config, record: ClaimRecord) -> None:
    """Give the port slot of a claim that is no longer held back (released, reaped,
    integrated); only that claim's, never a newer claim's of the lane."""
    if record.port is not None:
        from lanes import ports

        ports.free(cfg, record.wave, record.lane, claim=record)


def _drop_port(cfg: Config, port: int | None, claiming: str) -> None:
    if port is not None:
        from lanes import ports

        ports.drop(cfg, claiming)


def held(cfg: Config, wave: str, lane: str) -> tuple[Path, ClaimRecord]:
    claim_dir, record, _ = held_by(cfg, wave, lane)
    return claim_dir, record


def held_by(cfg: Config, wave: str, lane: str) -> tuple[Path, ClaimRecord, coord.Holder]:
    """The lane's claim directory, its record and its holder as the truth says now; the
    holder is what a pinned heartbeat, submit or release must still find."""
    check_wave(wave)
    check_lane(lane)
    claim_dir = cfg.claim_dir(wave, lane)
    record = read_record(claim_dir)
    c = coord.for_config(cfg)
    holder = coord.Holder(record.agent, record.to_json()) if record else None
    if c.kind != "local":
        holder = c.holder(wave, lane)
        if record is not None and (holder is None or holder.record != record.to_json()):
            # The claim here is left from one the remote no longer has (released or
            # reaped elsewhere, or a claim undone while this machine was cut off): the
            # local working area is archived, its saved work kept; the lane is not held.
            archive(cfg, wave, lane, "superseded")
            free_port(cfg, record)
            record = None
    if record is None or holder is None:
        raise Refused(
            "not-held",
            f"lane {wave}/{lane} is not held (never claimed, released or reaped)",
            hint=f"claim it with: lanes claim {wave} {lane} --agent ID",
        )
    return claim_dir, record, holder


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
    """Record that the holder is alive: locally the heartbeat file's mtime becomes now
    (no space needed on disk; a heartbeat file removed or replaced by a symlink is made
    again as lanes' own regular file); on a remote the claim ref moves to a new commit,
    with a lease on the one read."""
    claim_dir, record, holder = held_by(cfg, wave, lane)
    _not_integrated(cfg, wave, lane, "nothing to keep alive", "stop heartbeating")
    c = coord.for_config(cfg)
    c.heartbeat(wave, lane, holder)
    if c.kind != "local":  # once the remote has it: the local file, for status here
        local.touch_heartbeat(claim_dir / HEARTBEAT, wave, lane)
    return {"wave": wave, "lane": lane, "agent": record.agent, "heartbeat": _now()}


def heartbeat_age(
    claim_dir: Path, now: float | None = None, problems: list[str] | None = None
) -> float | None:
    """Seconds since the holder's last heartbeat (the heartbeat file's mtime), or None when
    it cannot be told: no heartbeat file, not a regular file, or a time that cannot be
    believed. None is never stale: gc does not reap the lane; the reason goes into
    `problems` when given.

    A heartbeat in the future (D32): up to 5 minutes ahead counts as now (clocks differ a
    little). Further ahead, its time was set by hand (touch -d), copied from a machine with
    another clock, or written by a clock since set back, and is not believed: the time the
    file was really changed last, its ctime (which no utime can set), is used instead, so
    the heartbeat counts from when it was written and is stale `stale_after` later. When
    the ctime is ahead too, this machine's clock went back since: the age is unknown (None)
    until the clock passes it or the holder beats again.
    """
    import stat

    skew = 300.0
    now = time.time() if now is None else now
    path = claim_dir / HEARTBEAT

    def note(text: str) -> None:
        if problems is not None:
            problems.append(f"heartbeat {path} {text}")

    def iso(epoch: float) -> str:
        try:
            return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            return f"{epoch:.0f} (epoch seconds)"

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        note("is missing: gc does not reap the lane (lanes heartbeat makes it again)")
        return None
    except OSError as exc:
        note(f"cannot be read ({exc.strerror}): gc does not reap the lane")
        return None
    if not stat.S_ISREG(st.st_mode):
        note("is not a regular file: gc does not reap the lane (lanes heartbeat replaces it)")
        return None
    if st.st_mtime <= now + skew:
        return max(0.0, now - st.st_mtime)
    ahead = int(st.st_mtime - now)
    if st.st_ctime <= now + skew:
        note(
            f"time {iso(st.st_mtime)} is {ahead}s in the future (set by hand, or by a clock "
            f"that was wrong): counted from when it was written, {iso(st.st_ctime)}"
        )
        return max(0.0, now - st.st_ctime)
    note(
        f"time {iso(st.st_mtime)} is {ahead}s in the future, and so is the moment it was "
        "written: this machine's clock went back since; the lane is not judged stale until "
        f"the clock passes {iso(st.st_ctime)} or its holder heartbeats"
    )
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
    saved_nested: list[str] = field(default_factory=list)  # nested repositories, whole
    saved_against: str | None = None  # the commit the patch applies to (HEAD when saved)


def lane_lock(cfg: Config, wave: str, lane: str) -> Any:
    """Held by whoever changes what a held lane is (release, gc, submit): two of them at
    once would, say, save the patch of a worktree the other is removing, over the good one,
    or reap a lane just submitted."""
    from filelock import FileLock

    path = cfg.state_dir / "claims" / check_wave(wave) / f"{check_lane(lane)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def release(cfg: Config, wave: str, lane: str, keep_worktree: bool = False) -> ReleaseResult:
    """Give the lane up. Its work is saved and checked before its worktree is removed; when
    that cannot be done (`save-failed`, `save-check-failed`) the lane stays held, untouched."""
    with lane_lock(cfg, wave, lane):
        claim_dir, record, holder = held_by(cfg, wave, lane)
        _not_integrated(cfg, wave, lane, "nothing to release", "run lanes gc to remove it")
        retired = retire_worktree(cfg, claim_dir, record, "release", keep_worktree)

        def row(dest: Path) -> coord.PendingEvent:  # in the push that frees it, on a remote
            return coord.PendingEvent(
                "release", lane, record.agent, {"archived_to": str(dest), **retired.details(dest)}
            )

        dest = coord.for_config(cfg).retire(wave, lane, holder, "released", row)
        details = retired.details(dest)
        free_port(cfg, record)
    return ReleaseResult(
        wave,
        lane,
        record.agent,
        str(dest),
        retired.removed,
        details["saved_patch"],
        details["saved_ignored"],
        list(retired.nested),
        retired.against,
    )


@dataclass(frozen=True)
class Retired:
    """What became of a lane's worktree: the files saved in the claim dir first."""

    removed: bool = False
    patch: Path | None = None  # every change on disk against HEAD, untracked files included
    ignored: Path | None = None  # git-ignored files and nested repositories, as a tar.gz
    ignored_skipped: tuple[str, ...] = ()  # ignored files too big to keep, special files
    nested: tuple[str, ...] = ()  # nested repositories, whole in the tar.gz
    against: str | None = None  # the commit the patch applies to

    def details(self, dest: Path) -> dict[str, Any]:
        """For the ledger row, with paths as they are once the claim dir is archived."""
        return {
            "worktree_removed": self.removed,
            "saved_patch": str(dest / self.patch.name) if self.patch else None,
            "saved_ignored": str(dest / self.ignored.name) if self.ignored else None,
            "saved_nested": list(self.nested),
            "saved_against": self.against,
            "ignored_not_saved": list(self.ignored_skipped[:20]),  # the first, by name
            "ignored_not_saved_count": len(self.ignored_skipped),
        }


def retire_worktree(
    cfg: Config, claim_dir: Path, record: ClaimRecord, why: str, keep: bool
) -> Retired:
    """Save the work on the worktree's disk into the claim dir, then remove it (unless kept).

    The save is written, fsynced, read back and checked before anything is removed; if it
    cannot be, this raises and the worktree stays as it is. A worktree that is not this
    repository's (gone, or a path a record names) is never touched.
    """
    path = Path(record.worktree)
    if keep:
        return Retired()
    if not worktrees.is_ours(cfg, path):
        git.worktree_prune(cfg.main_checkout)  # it vanished: forget its registration
        return _saved_before(claim_dir)
    saved = saves.save(path, claim_dir, why)
    removed = worktrees.remove(cfg, path)
    return Retired(
        removed, saved.patch, saved.archive, saved.not_saved, saved.nested, saved.against
    )


def _saved_before(claim_dir: Path) -> Retired:
    """A retirement killed after its checked save and the worktree's move away: what it
    saved is in the claim dir, and is the lane's work."""
    saves.drop_scratch(claim_dir)
    patch = next(iter(sorted(claim_dir.glob("*-uncommitted.patch"))), None)
    ignored = next(iter(sorted(claim_dir.glob("*-ignored.tar.gz"))), None)
    return Retired(False, patch, ignored)


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
