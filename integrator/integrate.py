"""The serial integration pass: lanes in, one at a time, `main` moved once, nothing lost.

Lock -> clean up after a killed pass -> bring the ledger level with main -> plan -> in a
scratch worktree detached at main: for each lane, cherry-pick its commits, apply its
fragments in one commit carrying the trailers (with `land = "squash"`, the lane's commits
and its fragments in that one commit, listing the lane's commits), run test_command -> bump
the version once
-> move main by compare-and-swap -> bring the user's checkout along -> ledger -> archive
the landed fragments. Everything before the compare-and-swap happens in the scratch
worktree and the object store only, so a kill there changes nothing anyone can see;
everything after it is derived from main's trailers and redone by the next run
(docs/integrator.md, "Crash safety", goes through it line by line).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integrator import checkout, plan, trailers
from integrator.plan import Bounce, BounceError, LanePlan
from lanes import claims, git, state, worktrees
from lanes.config import Config
from lanes.errors import Contention, LanesError, OperationalError
from lanes.surfaces import version

AGENT = "integrator"
LOCK = "integrate.lock"
OWNER = "integrate.owner"
SCRATCH = "scratch"
OUTPUT_TAIL = 20  # lines of a failing test's output kept in the bounce


@dataclass(frozen=True)
class Landing:
    lane: str
    agent: str
    commits: list[str]  # on main, oldest first; the last one carries the trailers
    fragments: list[str]
    entries: list[str]
    bump: str | None
    ops: int


@dataclass
class IntegrateResult:
    wave: str
    old_head: str
    head: str
    version: str | None
    version_bump: str | None = None  # "minor 0.3.5 -> 0.4.0" when this pass bumped
    landings: list[Landing] = field(default_factory=list)
    bounced: list[Bounce] = field(default_factory=list)
    reconciled: list[str] = field(default_factory=list)  # landed by a killed pass
    checkout: str = "unchanged"  # updated, detached, not-on-main, unchanged
    checkout_note: str = ""

    @property
    def integrated(self) -> list[str]:
        return [ld.lane for ld in self.landings]

    def to_json(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "integrated": self.integrated,
            "bounced": [b.__dict__ for b in self.bounced],
            "reconciled": self.reconciled,
            "head": self.head,
            "old_head": self.old_head,
            "version": self.version,
            "version_bump": self.version_bump,
            "landings": [ld.__dict__ for ld in self.landings],
            "checkout": {"status": self.checkout, "note": self.checkout_note},
        }


def integrate(cfg: Config, wave: str) -> IntegrateResult:
    state.known_wave(cfg, wave)  # before the lock: an unknown wave changes nothing
    with _pass_lock(cfg, wave):
        _failpoint("locked")
        _clean_scratch(cfg)
        note = checkout.catch_up(cfg)
        reconciled = _reconcile(cfg, wave)
        the_plan = plan.read(cfg, wave)
        log = claims.ledger(cfg, wave)
        log.append(
            "integrate-start",
            "",
            AGENT,
            head=the_plan.head,
            lanes=[lp.lane for lp in the_plan.lanes],
            pid=os.getpid(),
        )
        _failpoint("started")
        result = IntegrateResult(wave, the_plan.head, the_plan.head, the_plan.version)
        result.reconciled, result.checkout_note = reconciled, note
        try:
            if the_plan.lanes:
                _replay(cfg, the_plan, result)
            if result.head != the_plan.head:
                _move_main(cfg, wave, result)
        except LanesError as exc:  # main did not move: say so, the lanes wait for a rerun
            log.append("integrate-done", "", AGENT, aborted=exc.code, message=exc.message)
            raise
        for ld in result.landings:
            log.append(
                "integrated",
                ld.lane,
                ld.agent,
                commits=ld.commits,
                head=result.head,
                fragments=ld.fragments,
                entries=ld.entries,
                bump=ld.bump,
            )
            _failpoint("ledger")
            _archive(cfg, wave, ld.lane, ld.fragments)
            _failpoint("archived")
        for b in result.bounced:
            log.append(
                "bounced", b.lane, b.agent, reason=b.reason, files=b.files, message=b.message
            )
        log.append(
            "integrate-done",
            "",
            AGENT,
            integrated=result.integrated,
            bounced=[b.lane for b in result.bounced],
            reconciled=result.reconciled,
            head=result.head,
            version=result.version,
        )
        return result


# -- the lanes, in the scratch worktree ------------------------------------------------


def _replay(cfg: Config, the_plan: plan.Plan, result: IntegrateResult) -> None:
    env = git.identity_env(cfg.main_checkout)
    scratch = _make_scratch(cfg, the_plan.head)
    _failpoint("scratch")
    try:
        surfaces = plan.Surfaces(cfg, lambda p: _read(scratch, p), the_plan.earlier_ops)
        head = the_plan.head
        for lp in the_plan.lanes:
            if lp.problem is not None:
                result.bounced.append(lp.problem)
                continue
            try:
                landing = _land(cfg, the_plan.wave, scratch, head, lp, surfaces, env)
            except BounceError as exc:
                git.reset_scratch(scratch, head)
                result.bounced.append(exc.bounce(lp))
                continue
            head = landing.commits[-1]
            result.landings.append(landing)
            _failpoint("landed-in-scratch")
        requested = version.largest([ld.bump for ld in result.landings if ld.bump])
        step = plan.version_step(the_plan.applied_bump, requested)
        if step is not None:
            head, result.version_bump, result.version = _bump(
                cfg, the_plan.wave, scratch, step, env
            )
        result.head = head
    finally:
        _remove_scratch(cfg, scratch)


def _land(
    cfg: Config,
    wave: str,
    scratch: Path,
    head: str,
    lp: LanePlan,
    surfaces: plan.Surfaces,
    env: dict[str, str],
) -> Landing:
    assert lp.tip is not None
    repo = cfg.main_checkout
    squash = cfg.settings.land == "squash"
    own = git.replayed_changes(repo, head, lp.tip) if squash else []
    picks = [c.sha for c in own] if squash else git.commits_to_replay(repo, head, lp.tip)
    if picks:
        res = git.cherry_pick(scratch, picks, env)
        if res.returncode != 0:
            files = git.conflicted_paths(scratch)
            if files:
                raise BounceError(
                    "conflict", files, f"the lane conflicts with {cfg.main}: {', '.join(files)}"
                )
            raise BounceError("replay-failed", [], (res.stderr or res.stdout).strip()[-500:])
    present: set[str] = set()
    if lp.entries:
        present = set(git.list_files(scratch, "HEAD", cfg.entries_dir()) or [])
    change = surfaces.change_for(lp, present, plan.seen_by(repo, lp.tip))
    for path, text in change.files.items():
        (scratch / path).parent.mkdir(parents=True, exist_ok=True)
        (scratch / path).write_bytes(text.encode("utf-8"))
    summary = [f"manifest: + {e}" for e in change.entries]
    summary += [f"deploy: {op.op} {op.path}" for op in change.ops]
    summary += [f"version: {lp.bump} bump requested"] if lp.bump else []
    message = trailers.lane_message(wave, lp.lane, lp.fragment_files, summary)
    if squash:  # the same replay, then its commits folded into the one that carries trailers
        git.reset_soft(scratch, head)
        message = _listing_commits(message, own)
        env = {**env, **_author_of(own)}
    marker = git.commit_paths(scratch, sorted(change.files), message, env)
    if cfg.settings.test_command:
        _test(cfg, scratch, wave, lp)
        git.reset_scratch(scratch, marker)  # what the test left behind is not the next lane's
    surfaces.accept(lp, change)
    return Landing(
        lp.lane,
        lp.agent,
        git.commits_to_replay(scratch, head, marker),
        lp.fragment_files,
        change.entries,
        lp.bump,
        len(change.ops),
    )


def _listing_commits(message: str, own: list[git.CommitFiles]) -> str:
    """A squashed lane's message: the lane's own commits (short sha, subject) listed after
    the subject line, the fragments' summary and the trailers as a replayed lane has them."""
    subject, _, rest = message.partition("\n\n")
    listed = "\n".join(f"- {c.sha[:12]} {c.subject}" for c in own) or "- none: fragments only"
    return f"{subject}\n\nThe lane's own commits, squashed into this one:\n{listed}\n\n{rest}"


def _author_of(own: list[git.CommitFiles]) -> dict[str, str]:
    """The squash commit's author: the author of the lane's last commit (the pass commits)."""
    if not own or not own[-1].author_name.strip():  # git refuses an empty name
        return {}
    return {"GIT_AUTHOR_NAME": own[-1].author_name, "GIT_AUTHOR_EMAIL": own[-1].author_email}


def _test(cfg: Config, scratch: Path, wave: str, lp: LanePlan) -> None:
    """test_command from the configuration (never from a fragment), in the scratch tree."""
    command = cfg.settings.test_command
    proc = subprocess.run(
        command,
        shell=True,
        cwd=scratch,
        env=git.clean_env({"LANES_WAVE": wave, "LANES_LANE": lp.lane}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-OUTPUT_TAIL:]
        raise BounceError(
            "test-failed",
            [],
            f"test_command {command!r} exited {proc.returncode}"
            + (":\n" + "\n".join(tail) if tail else ""),
        )


def _bump(
    cfg: Config, wave: str, scratch: Path, step: str, env: dict[str, str]
) -> tuple[str, str, str]:
    names = cfg.surfaces.version_files
    texts = {name: _read(scratch, name) or "" for name in names}
    old, new, changed = version.bump_files(texts, step)
    for name, text in changed.items():
        (scratch / name).write_bytes(text.encode("utf-8"))
    sha = git.commit_paths(scratch, names, trailers.bump_message(wave, step, old, new), env)
    return sha, f"{step} {old} -> {new}", new


def _read(scratch: Path, path: str) -> str | None:
    try:
        return (scratch / path).read_bytes().decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None


# -- moving main and the user's checkout -----------------------------------------------


def _move_main(cfg: Config, wave: str, result: IntegrateResult) -> None:
    repo, old, new = cfg.main_checkout, result.old_head, result.head
    ref = f"refs/heads/{cfg.main}"
    on_main = git.head_branch(repo) == ref
    dirty = on_main and git.tracked_changes(repo)
    checkout.write_journal(cfg, {"wave": wave, "old": old, "new": new})
    _failpoint("journal")
    moved = git.update_ref(repo, ref, new, old, f"lanes integrate {wave}")
    if moved.returncode != 0:
        checkout.forget_journal(cfg)
        now = git.rev_parse(repo, cfg.main) or "nothing"
        if now == old:  # git said no, but nobody moved main: not contention
            raise _update_refused(cfg, wave, old, moved.stderr or moved.stdout)
        raise Contention(
            "main-moved",
            f"{cfg.main} moved during the pass (from {old[:12]} to {now[:12]}); the pass "
            "changed nothing: no lane is marked integrated, every fragment is where it was",
            hint=f"run lanes integrate {wave} again: it starts from the new {cfg.main}",
            expected=old,
            found=now,
        )
    _failpoint("cas")
    if not on_main:
        result.checkout = "not-on-main"
    elif dirty:
        git.detach_head(repo, old)
        result.checkout = "detached"
        result.checkout_note = checkout.detached_note(cfg, old, "it has uncommitted changes")
    else:
        result.checkout, result.checkout_note = checkout.bring_along(cfg, old, new)
    checkout.forget_journal(cfg)


def _update_refused(cfg: Config, wave: str, old: str, said: str) -> OperationalError:
    """main is still at `old` and git would not move it: a hook that protects it, or a lock
    file in the way. Rerunning would meet the same answer, so name it and what to do."""
    said = said.strip() or "(git printed nothing)"
    lock = _LOCK_FILE.search(said)
    where = f"{cfg.main} is still at {old[:12]}; the pass changed nothing: no lane is marked "
    where += "integrated, every fragment is where it was"
    if lock:
        return OperationalError(
            "main-update-refused",
            f"git could not move {cfg.main}: its lock file {lock.group(1)} exists (another "
            f"git process is running, or one crashed and left it). {where}. git said: {said}",
            hint=f"if no git process is running in {cfg.main_checkout}, remove "
            f"{lock.group(1)}; then run lanes integrate {wave} again",
            lock_file=lock.group(1),
            git_message=said,
        )
    hooked = "hook" in said
    return OperationalError(
        "main-update-refused",
        f"git refused to move {cfg.main}"
        + (" (a reference-transaction hook said no)" if hooked else "")
        + f". {where}. git said: {said}",
        hint=(
            "the repository's reference-transaction hook refuses updates of "
            f"{cfg.main}: let it accept lanes integrate (or move {cfg.main} the way it "
            f"wants), then run lanes integrate {wave} again"
            if hooked
            else f"fix what git names, then run lanes integrate {wave} again"
        ),
        git_message=said,
    )


_LOCK_FILE = re.compile(r"Unable to create '([^']+\.lock)': File exists")


# -- bookkeeping derived from main -----------------------------------------------------


def _reconcile(cfg: Config, wave: str) -> list[str]:
    """Bring the ledger level with main (never the other way round) and archive the
    fragments of every landed lane: what a pass killed after moving main left undone."""
    head = git.rev_parse(cfg.main_checkout, cfg.main)
    if head is None:
        return []
    landed = trailers.landed(cfg.main_checkout, head, wave)
    if not landed:
        return []
    hist = state.histories(cfg, wave)
    log = claims.ledger(cfg, wave)
    done = []
    for ld in reversed(landed):
        if not ld.lane:
            continue
        known = hist.get(ld.lane)
        if known is None or known.state != "integrated":
            log.append(
                "integrated",
                ld.lane,
                known.agent if known else "",
                commits=[ld.sha],
                head=head,
                fragments=ld.fragments,
                reconciled=True,
            )
            done.append(ld.lane)
        _archive(cfg, wave, ld.lane, ld.fragments)
    return done


def _archive(cfg: Config, wave: str, lane: str, names: list[str]) -> None:
    """Move the applied fragment files beside fragments/ (one rename each; idempotent)."""
    claim_dir = cfg.claim_dir(wave, lane)
    src = claim_dir / claims.FRAGMENTS
    if not names or not src.is_dir():
        return
    dest = claim_dir / plan.APPLIED
    dest.mkdir(exist_ok=True)
    for name in names:
        if (src / name).is_file() and not (dest / name).exists():
            os.rename(src / name, dest / name)


# -- the lock and the scratch worktree -------------------------------------------------


@contextmanager
def _pass_lock(cfg: Config, wave: str) -> Iterator[None]:
    """One pass per repository at a time (main is shared by every wave)."""
    from filelock import FileLock, Timeout

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cfg.state_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = (cfg.state_dir / OWNER).read_text(encoding="utf-8").strip()
        except OSError:
            owner = "unknown"
        raise Contention(
            "integrator-running",
            f"another integration pass is running ({owner})",
            hint="wait for it to finish (lanes ledger WAVE --follow shows it), then run again",
            owner=owner,
        ) from None
    try:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        (cfg.state_dir / OWNER).write_text(
            f"pid {os.getpid()}, wave {wave}, since {stamp}\n", encoding="utf-8"
        )
        yield
    finally:
        lock.release()


def _scratch_root(cfg: Config) -> Path:
    return cfg.state_dir / SCRATCH


def _clean_scratch(cfg: Config) -> None:
    """Remove what a killed pass left: its scratch worktrees, registered or not."""
    root = _scratch_root(cfg)
    if not root.exists():
        return
    real = root.resolve()
    for path in git.worktree_paths(cfg.main_checkout):
        if path.resolve().is_relative_to(real):
            worktrees.remove(cfg, path)
    for leftover in root.iterdir():
        shutil.rmtree(leftover, ignore_errors=True)
    git.worktree_prune(cfg.main_checkout)


def _make_scratch(cfg: Config, rev: str) -> Path:
    from filelock import FileLock

    root = _scratch_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"pass-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with FileLock(str(cfg.state_dir / "worktree-add.lock")):  # the lock lanes claim uses
        git.worktree_add_detached(cfg.main_checkout, path, rev)
    try:
        git.checkout_files(path)
    except OperationalError:
        _remove_scratch(cfg, path)
        raise
    return path


def _remove_scratch(cfg: Config, path: Path) -> None:
    worktrees.remove(cfg, path)
    shutil.rmtree(path, ignore_errors=True)


def _failpoint(name: str) -> None:
    """Testing aid: LANES_FAILPOINT=<name> makes the pass SIGKILL itself right here, so
    the tests can kill it at each line that writes, not only where a timer lands."""
    if os.environ.get("LANES_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
