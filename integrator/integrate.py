"""The integration pass: lanes in, in submission order, `main` moved once, nothing lost.

Lock -> clean up after a killed pass -> bring the ledger level with main -> plan -> land
each lane in the object store, no working tree (integrator/land.py: its commits replayed
with merge-tree, its fragments in one commit carrying the trailers) -> with test_command,
test them in stacks and bisect a red one (integrator/batches.py; the test runs in scratch
worktrees, one per test job) -> bump the version once -> move main by compare-and-swap ->
bring the user's checkout along -> ledger -> archive the landed fragments. Everything
before the compare-and-swap happens in the object store and in scratch folders only, so a
kill there changes nothing anyone can see; everything after it is derived from main's
trailers and redone by the next run (docs/integrator.md, "Crash safety", goes through it
line by line).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrator import batches, checkout, failpoint, land, plan, trailers
from integrator.plan import Bounce
from lanes import claims, coord, git, ledger, state, worktrees
from lanes.config import Config
from lanes.coord import PendingEvent
from lanes.errors import Contention, LanesError, OperationalError, Refused

if TYPE_CHECKING:
    from lanes.coord import Coord, EventLog

AGENT = "integrator"
SCRATCH = "scratch"
TESTED = "tested"  # the ledger event of a test run
_failpoint = failpoint


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
    checkout: str = "unchanged"  # updated, detached, not-on-main, not-followed, unchanged
    checkout_note: str = ""
    tests: list[batches.TestRun] = field(default_factory=list)  # every test_command run
    flaky: list[str] = field(default_factory=list)  # lanes bounced on contradicting runs

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
            "tests": [_run_json(run) for run in self.tests],
            "flaky": self.flaky,
        }


def _run_json(run: batches.TestRun) -> dict[str, Any]:
    return {
        "lanes": run.lanes,
        "result": "pass" if run.ok else "fail",
        "seconds": round(run.seconds, 3),
        "exit": run.code,
    }


def integrate(cfg: Config, wave: str, progress: batches.Progress | None = None) -> IntegrateResult:
    """The pass. `progress`, when given, hears what the pass is doing (lane i of N, the
    stack under test, the bisection's steps): the CLI shows it on a terminal."""
    state.known_wave(cfg, wave)  # before the lock: an unknown wave changes nothing
    where = coord.for_config(cfg)
    with where.integrator_lease(wave, ""):
        _failpoint("locked")
        _clean_scratch(cfg)
        note = checkout.catch_up(cfg)
        tip = where.fetch_main()
        if tip is not None:  # remote: the pass lands on the remote's main; ours follows it
            note = _follow(cfg, wave, tip) or note
        where.stage_wave(wave)
        reconciled = _reconcile(cfg, wave)
        the_plan = plan.read(cfg, wave, where)
        log = where.ledger(wave)
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
                _land_lanes(cfg, the_plan, result, log, progress)
            if result.head != the_plan.head:
                _move_main(cfg, where, wave, result)
        except LanesError as exc:  # main did not move: say so, the lanes wait for a rerun
            log.append(
                "integrate-done",
                "",
                AGENT,
                aborted=exc.code,
                message=exc.message,
                **_unrecorded_tests(result),
            )
            raise
        for ld in result.landings:  # their rows went with main (_move_main)
            _archive(cfg, wave, ld.lane, ld.fragments)
            if cfg.settings.setup.ports:  # an integrated lane's ports are free again
                from lanes import ports

                ports.free(cfg, wave, ld.lane)
            _failpoint("archived")
        for b in result.bounced:
            extra = {"together_with": b.together_with} if b.together_with else {}
            log.append(
                "bounced",
                b.lane,
                b.agent,
                reason=b.reason,
                files=b.files,
                message=b.message,
                **extra,
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
            **_unrecorded_tests(result),
        )
        return result


# -- the lanes, in the object store (and the tests, in scratch worktrees) ---------------


def _land_lanes(
    cfg: Config,
    the_plan: plan.Plan,
    result: IntegrateResult,
    log: EventLog,
    progress: batches.Progress | None,
) -> None:
    tester: batches.Tester | None = None
    made: list[Path] = []

    def make_worktree(rev: str) -> Path:
        made.append(_make_scratch(cfg, rev))
        return made[-1]

    def record(run: batches.TestRun) -> None:
        verdict = "passed" if run.ok else f"failed (exit {run.code})"
        if progress:
            progress("test", f"test {verdict} in {run.seconds:.1f} s: {len(run.lanes)} lane(s)")
        if TESTED in ledger.EVENTS:
            log.append(
                TESTED,
                "",
                AGENT,
                lanes=run.lanes,
                result="pass" if run.ok else "fail",
                seconds=round(run.seconds, 3),
                exit=run.code,
            )

    try:
        with land.Workspace(cfg, the_plan.head, _scratch_root(cfg)) as ws:
            lander = land.Lander(cfg, the_plan.wave, ws)
            start = lander.head(the_plan.head)
            surfaces = plan.Surfaces(
                cfg, lambda path: lander.read_text(start.tree, path), the_plan.earlier_ops
            )
            if cfg.settings.test_command:
                tester = batches.Tester(
                    cfg, the_plan.wave, cfg.settings.test_jobs, make_worktree, record
                )
            engine = batches.Batches(cfg, lander, the_plan.applied_bump, tester, progress)
            outcome = engine.run(start, surfaces, the_plan.lanes)
    finally:
        if tester is not None:
            result.tests = list(tester.runs)
        for path in made:
            _remove_scratch(cfg, path)
    result.tests, result.flaky = outcome.runs, outcome.flaky
    result.landings = [
        Landing(
            step.lane.lane,
            step.lane.agent,
            step.landed.commits,
            step.lane.fragment_files,
            step.landed.change.entries,
            step.lane.bump,
            len(step.landed.change.ops),
        )
        for step in outcome.steps
    ]
    result.bounced = outcome.bounced
    result.head = outcome.head.sha
    if outcome.version_bump:
        result.version_bump, result.version = outcome.version_bump, outcome.version


def _unrecorded_tests(result: IntegrateResult) -> dict[str, Any]:
    """The test runs, in the done row, while the ledger has no `tested` event to give
    each its own row (lanes/ledger.py's EVENTS)."""
    if TESTED in ledger.EVENTS or not result.tests:
        return {}
    return {"tests": [_run_json(run) for run in result.tests]}


# -- moving main and the user's checkout -----------------------------------------------


def _move_main(cfg: Config, where: Coord, wave: str, result: IntegrateResult) -> None:
    """main moved with its record (an `integrated` row a lane, and on a remote the claims
    marked), all of it or none (lanes/coord: `land`); then this repository's main and the
    user's checkout follow."""
    repo, old, new = cfg.main_checkout, result.old_head, result.head
    ref = f"refs/heads/{cfg.main}"
    on_main = git.head_branch(repo) == ref
    dirty = on_main and git.tracked_changes(repo)
    checkout.write_journal(cfg, {"wave": wave, "old": old, "new": new})
    _failpoint("journal")
    rows = [
        PendingEvent(
            "integrated",
            ld.lane,
            ld.agent,
            {
                "commits": ld.commits,
                "head": new,
                "fragments": ld.fragments,
                "entries": ld.entries,
                "bump": ld.bump,
            },
        )
        for ld in result.landings
    ]
    landed = where.land(wave, new, old, rows, result.integrated)
    if not landed.moved:
        checkout.forget_journal(cfg)
        now = landed.found or "nothing"
        if now == old:  # git said no, but nobody moved main: not contention
            raise _update_refused(cfg, wave, old, landed.why)
        raise Contention(
            "main-moved",
            f"{cfg.main} moved during the pass (from {old[:12]} to {now[:12]}); the pass "
            "changed nothing: no lane is marked integrated, every fragment is where it was",
            hint=f"run lanes integrate {wave} again: it starts from the new {cfg.main}",
            expected=old,
            found=now,
        )
    if git.rev_parse(repo, cfg.main) == old:  # landed on a remote: our main follows it
        followed = git.update_ref(repo, ref, new, old, f"lanes integrate {wave}")
        if followed.returncode != 0:  # a hook or a lock here: the remote has it all the same
            checkout.forget_journal(cfg)
            said = (followed.stderr or followed.stdout).strip() or "(git printed nothing)"
            result.checkout = "not-followed"
            result.checkout_note = (
                f"landed on the remote; {cfg.main} here could not follow it (git said: {said}) "
                f"and stays at {old[:12]}, its checkout untouched; the next pass, or "
                f"git fetch and git merge --ff-only in {repo}, brings it along"
            )
            return
    result.checkout, result.checkout_note = _bring_checkout(cfg, old, new, on_main, dirty)
    checkout.forget_journal(cfg)


def _bring_checkout(cfg: Config, old: str, new: str, on_main: bool, dirty: bool) -> tuple[str, str]:
    if not on_main:
        return "not-on-main", ""
    if dirty:
        git.detach_head(cfg.main_checkout, old)
        return "detached", checkout.detached_note(cfg, old, "it has uncommitted changes")
    return checkout.bring_along(cfg, old, new)


def _follow(cfg: Config, wave: str, tip: str) -> str:
    """This repository's main brought to the remote's `tip` (a fast-forward, the checkout
    with it) before a pass reads anything: the remote is the truth, and a main here with
    commits the remote lacks would land them unseen, so it is refused."""
    repo, ref = cfg.main_checkout, f"refs/heads/{cfg.main}"
    here = git.rev_parse(repo, cfg.main)
    if here == tip:
        return ""
    if here and not git.is_ancestor(repo, here, tip):
        raise Refused(
            "main-diverged",
            f"{cfg.main} here ({here[:12]}) has commits that {cfg.main} on the remote "
            f"({tip[:12]}) lacks; the pass lands on the remote's {cfg.main} only",
            hint=f"push them (git push {cfg.settings.remote} {cfg.main}) or drop them "
            f"(git reset --keep {tip[:12]} on {cfg.main}), then run the pass again",
            here=here,
            remote=tip,
        )
    on_main = git.head_branch(repo) == ref
    dirty = on_main and git.tracked_changes(repo)
    if here:
        checkout.write_journal(cfg, {"wave": wave, "old": here, "new": tip})
    moved = git.update_ref(repo, ref, tip, here or git.ZERO_OID, "lanes: follow the remote")
    if moved.returncode != 0:
        checkout.forget_journal(cfg)
        raise _update_refused(cfg, wave, here or "nothing", moved.stderr or moved.stdout)
    if not here:
        return ""
    _, said = _bring_checkout(cfg, here, tip, on_main, dirty)
    checkout.forget_journal(cfg)
    return said


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
