"""Which planned lanes land: stacks, test runs, bisection, speculation.

Lanes are landed tree-level (integrator/land.py) one on top of the other; a lane that
conflicts or brings a bad fragment bounces there, before any test. Without a test command
that is all. With one, up to `batch` lanes that applied are a *stack*, and `test_command`
runs once on its tip (with the version bump the landed lanes ask for, so the tree tested
is the tree main would get). Green: the stack lands. Red: a bisection finds the first lane
whose prefix fails, never running a tree whose result is known (results are kept by
tree); the lanes below it land, it bounces, and every lane after it goes back to the queue,
to be landed again on the new base (a lane that bounced after it was judged on a stack
holding it, so it is judged again too). Before a culprit is bounced it is tested alone on
the stack's base: red, it breaks the test by itself; green, it fails only with lanes below
it, and a second bisection finds the one that makes it fail; it bounces naming that lane
(`together_with`), or as `test-flaky` when that lane and it together pass as well. With
`test_jobs` above 1, that many stacks are tested at once, each on top of the one before
(speculation): when one fails, the work behind it is thrown away and done again; a
bisection then tests that many points at once. docs/integrator.md gives the reasons.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from integrator import failpoint, plan
from integrator.land import Head, Landed, Lander
from integrator.plan import Bounce, BounceError, LanePlan, Surfaces
from lanes import git
from lanes.config import Config
from lanes.surfaces import version

OUTPUT_TAIL = 20  # lines of a failing test's output kept in the bounce
Progress = Callable[[str, str], None]  # (kind: lane, test, bisect, bounce; text)


@dataclass(frozen=True)
class Step:
    """A lane landed on top of the steps below it, and the contended files after it."""

    landed: Landed
    surfaces: Surfaces

    @property
    def lane(self) -> LanePlan:
        return self.landed.lane

    @property
    def head(self) -> Head:
        return self.landed.head


@dataclass
class Base:
    """Where the next stack lands: a head, the contended files there, the lanes of this pass
    under it, and whether the test passed on it (None: never tested)."""

    head: Head
    surfaces: Surfaces
    steps: list[Step]
    passed: bool | None = None


@dataclass
class Stack:
    base: Base
    lanes: list[LanePlan] = field(default_factory=list)  # taken from the queue, in order
    steps: list[Step] = field(default_factory=list)
    # (lanes under it when it was judged, or -1 before any replay; the bounce)
    bounced: list[tuple[int, Bounce]] = field(default_factory=list)

    def prefix(self, m: int) -> Base:
        """The base plus the first `m` steps."""
        if m == 0:
            return self.base
        top = self.steps[m - 1]
        return Base(top.head, top.surfaces, self.base.steps + self.steps[:m])


@dataclass(frozen=True)
class TestRun:
    lanes: list[str]  # the lanes under test, on top of a base that passed
    tree: str
    ok: bool
    code: int
    seconds: float
    output: str  # the last lines, for a bounce


@dataclass
class Outcome:
    head: Head  # where main goes: the landed lanes and the version bump
    steps: list[Step]
    bounced: list[Bounce]
    version_bump: str | None = None
    version: str | None = None
    runs: list[TestRun] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)


class Tester:
    """Runs test_command on trees, at most `jobs` at once, each run in a scratch worktree of
    its own, made when first needed and then moved from tree to tree, never made again.
    Results are kept by tree: a tree whose result is known is never run again."""

    def __init__(
        self,
        cfg: Config,
        wave: str,
        jobs: int,
        make_worktree: Callable[[str], Path],
        record: Callable[[TestRun], None],
    ) -> None:
        self.cfg, self.wave, self.jobs = cfg, wave, jobs
        self.make_worktree, self.record = make_worktree, record
        self.worktrees: list[Path] = []
        self.known: dict[str, TestRun] = {}
        self.runs: list[TestRun] = []

    def run(self, wanted: list[tuple[Head, list[str]]]) -> list[TestRun]:
        """The result for each (head, lanes), running those not known, `jobs` at a time."""
        todo: dict[str, tuple[Head, list[str]]] = {}
        for head, lanes in wanted:
            if head.tree not in self.known:
                todo.setdefault(head.tree, (head, lanes))
        pending = list(todo.values())
        while pending:
            now, pending = pending[: self.jobs], pending[self.jobs :]
            while len(self.worktrees) < len(now):
                self.worktrees.append(self.make_worktree(now[len(self.worktrees)][0].sha))
                failpoint("scratch")
            with ThreadPoolExecutor(max_workers=len(now)) as pool:
                futures = [
                    pool.submit(self._one, wt, head, lanes)
                    for wt, (head, lanes) in zip(self.worktrees, now, strict=False)
                ]
                if len(now) > 1:
                    failpoint("speculating")
                done = [f.result() for f in futures]
            for result in done:
                self.known[result.tree] = result
                self.runs.append(result)
                self.record(result)
            failpoint("tested")
        return [self.known[head.tree] for head, _ in wanted]

    def _one(self, worktree: Path, head: Head, lanes: list[str]) -> TestRun:
        git.scratch_to(worktree, head.sha)
        command = self.cfg.settings.test_command
        env = {"LANES_WAVE": self.wave, "LANES_LANE": lanes[-1] if lanes else ""}
        env["LANES_LANES"] = " ".join(lanes)
        start = time.monotonic()
        proc = subprocess.run(
            command,
            shell=True,
            cwd=worktree,
            env=git.clean_env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
        )
        seconds = time.monotonic() - start
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-OUTPUT_TAIL:])
        return TestRun(lanes, head.tree, proc.returncode == 0, proc.returncode, seconds, tail)


class Batches:
    """The lanes of one pass, landed on `start` in order, tested in stacks."""

    def __init__(
        self,
        cfg: Config,
        lander: Lander,
        applied_bump: str | None,
        tester: Tester | None,
        progress: Progress | None = None,
    ) -> None:
        self.cfg, self.lander, self.applied_bump, self.tester = cfg, lander, applied_bump, tester
        self.batch, self.jobs = cfg.settings.batch, cfg.settings.test_jobs
        self.say: Progress = progress or (lambda kind, text: None)
        self.order: dict[str, int] = {}
        self.flaky: list[str] = []

    def run(self, start: Head, surfaces: Surfaces, lanes: list[LanePlan]) -> Outcome:
        self.order = {lp.lane: i for i, lp in enumerate(lanes, start=1)}
        base = Base(start, surfaces, [])
        queue, bounced = list(lanes), list[Bounce]()
        while queue:
            if self.tester is None:  # nothing to test: every lane that applies lands
                stack = self._stack(base, queue, len(queue))
                bounced += [b for _, b in stack.bounced]
                base, queue = stack.prefix(len(stack.steps)), []
                continue
            base, done, queue = self._round(base, queue)
            bounced += done
        head, bump, new_version = self._with_bump(base.head, base.steps)
        bounced.sort(key=lambda b: self.order.get(b.lane, 0))
        runs = self.tester.runs if self.tester else []
        return Outcome(head, base.steps, bounced, bump, new_version, runs, self.flaky)

    # -- one round: stacks built, tested at once, the first red one resolved ----------------

    def _round(
        self, base: Base, queue: list[LanePlan]
    ) -> tuple[Base, list[Bounce], list[LanePlan]]:
        assert self.tester is not None
        broken = base.passed is False  # main itself fails: lanes one at a time, as alone
        size, count = (1, 1) if broken else (self.batch, self.jobs)
        stacks: list[Stack] = []
        tops: list[Base] = []  # each stack's top: the base of the one behind it
        used, cursor = 0, base
        while len(stacks) < count and used < len(queue):
            stack = self._stack(cursor, queue[used:], size)
            used += len(stack.lanes)
            stacks.append(stack)
            cursor = stack.prefix(len(stack.steps))
            tops.append(cursor)
        tested = [s for s in stacks if s.steps]
        for s in tested:
            names = [st.lane.lane for st in s.steps]
            shown = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
            self.say("test", f"testing {len(names)} lane(s) ({shown}) on {s.base.head.sha[:12]}")
        runs = self.tester.run([self._candidate(s.prefix(len(s.steps))) for s in tested])
        verdict = dict(zip((id(s) for s in tested), runs, strict=True))
        done: list[Bounce] = []
        for k, stack in enumerate(stacks):
            run = verdict.get(id(stack))
            if run is None or run.ok:  # it lands (a stack of bounces only: nothing to test)
                done += [b for _, b in stack.bounced]
                base = tops[k]
                if run is not None:
                    base.passed = True
                continue
            base, resolved, back = self._resolve(stack, run)
            later = [lp for s in stacks[k + 1 :] for lp in s.lanes]
            return base, done + resolved, back + later + queue[used:]
        return base, done, queue[used:]

    def _stack(self, base: Base, lanes: list[LanePlan], size: int) -> Stack:
        """Land up to `size` lanes on `base`, one on the other; those that do not apply
        bounce (for now: a bounce judged on top of a lane that later bounces is judged
        again)."""
        stack = Stack(base)
        head, surfaces = base.head, base.surfaces
        for lp in lanes:
            if len(stack.steps) >= size:
                break
            stack.lanes.append(lp)
            where = f"lane {self.order.get(lp.lane, 0)}/{len(self.order)} {lp.lane}"
            if lp.problem is not None:
                stack.bounced.append((-1, lp.problem))
                self.say("lane", f"{where}: bounced ({lp.problem.reason})")
                continue
            try:
                landed = self.lander.land(head, lp, surfaces)
            except BounceError as exc:
                stack.bounced.append((len(stack.steps), exc.bounce(lp)))
                self.say("lane", f"{where}: bounced ({exc.reason})")
                continue
            surfaces = surfaces.copy()
            surfaces.accept(lp, landed.change)
            stack.steps.append(Step(landed, surfaces))
            head = landed.head
            self.say("lane", f"{where}: {'stacked' if self.tester else 'landed'}")
            failpoint("landed")
        return stack

    # -- a red stack ----------------------------------------------------------------------

    def _resolve(self, stack: Stack, red: TestRun) -> tuple[Base, list[Bounce], list[LanePlan]]:
        """Find the first lane whose prefix fails; land what is below it, bounce it, and
        give back every lane after it."""
        assert self.tester is not None
        lo, hi, failed = 0, len(stack.steps), red
        while hi - lo > 1:
            points = _points(lo, hi, self.jobs)
            self.say(
                "bisect",
                f"bisecting {len(stack.steps)} lanes: testing the first "
                + ", ".join(str(m) for m in points),
            )
            runs = self.tester.run([self._candidate(stack.prefix(m)) for m in points])
            failpoint("bisected")
            reds = [(m, r) for m, r in zip(points, runs, strict=True) if not r.ok]
            if reds:
                hi, failed = reds[0]
            lo = max([lo, *(m for m, r in zip(points, runs, strict=True) if r.ok and m < hi)])
        culprit = stack.steps[hi - 1]
        below = stack.prefix(hi - 1)
        below.passed = True if hi > 1 else stack.base.passed
        if below.passed is None:  # the pass's starting main was never tested: is it green?
            [alone] = self.tester.run([self._candidate(below)])
            below.passed = stack.base.passed = alone.ok
        bounce = self._culprit(stack, hi, failed, below)
        final = [b for pos, b in stack.bounced if pos < hi]
        at = next(i for i, lp in enumerate(stack.lanes) if lp is culprit.lane)
        back = [lp for lp in stack.lanes[at + 1 :] if lp.problem is None]
        self.say("bounce", f"{culprit.lane.lane}: bounced ({bounce.reason})")
        return below, [*final, bounce], back

    def _culprit(self, stack: Stack, hi: int, failed: TestRun, below: Base) -> Bounce:
        """Why the lane at `hi` bounces: it fails alone, or only with a lane under it (named),
        or the runs contradict each other (flaky)."""
        assert self.tester is not None
        lp = stack.steps[hi - 1].lane
        command = self.cfg.settings.test_command
        said = f"test_command {command!r} exited {failed.code}"
        if below.passed is False:
            return _bounce(
                lp,
                "test-failed",
                f"{said} (and it fails on {self.cfg.main} as it is, without this pass's "
                f"lanes: the failure may not be this lane's)",
                failed,
            )
        if hi == 1:
            return _bounce(lp, "test-failed", said, failed)
        base = stack.base
        alone = self._land_on(base, lp)
        if alone is None:
            return _bounce(
                lp,
                "test-failed",
                f"{said} on top of the lanes before it (it does not apply without them, so "
                "it could not be tested alone)",
                failed,
            )
        [run] = self.tester.run([self._candidate(alone)])
        if not run.ok:
            return _bounce(
                lp,
                "test-failed",
                f"{said} with this lane on top of {_named(stack.steps[: hi - 1])}, and "
                f"exited {run.code} with it alone on the same base",
                run,
            )
        # It passes alone on the same base: which lane under it makes it fail?
        others = stack.steps[: hi - 1]
        lo, top, failing = 0, len(others), failed
        self.say("bisect", f"{lp.lane} passes alone: looking for the lane it fails with")
        while top - lo > 1:
            points = _points(lo, top, self.jobs)
            tried = [(m, self._land_on(stack.prefix(m), lp)) for m in points]
            runs = self.tester.run([self._candidate(b) for _, b in tried if b is not None])
            found = iter(runs)
            results = [(m, next(found) if b is not None else None) for m, b in tried]
            failpoint("bisected")
            reds = [(m, r) for m, r in results if r is None or not r.ok]
            if reds:
                top, maybe = reds[0]
                failing = maybe or failing
            lo = max([lo, *(m for m, r in results if r is not None and r.ok and m < top)])
        partner = others[top - 1].lane
        if top > 1:  # the two together, on the base, with nothing else
            pair = self._land_on(base, partner)
            both = self._land_on(pair, lp) if pair is not None else None
            if both is not None:
                [run] = self.tester.run([self._candidate(both)])
                if run.ok:
                    self.flaky.append(lp.lane)
                    return _bounce(
                        lp,
                        "test-flaky",
                        f"{said} with this lane on top of {_named(others)}, but passed "
                        f"with it alone on the same base, and with it and "
                        f"{partner.lane} alone: the test is flaky, or the failure needs "
                        "several of those lanes at once. It is not landed, because no tree "
                        "holding it passed; submit it again as it is to try again",
                        failed,
                        [partner.lane],
                    )
                failing = run
        return _bounce(
            lp,
            "test-failed",
            f"test_command {command!r} exited {failing.code} with this lane and lane "
            f"{partner.lane} together, and passes with this lane alone on the same base; "
            f"{partner.lane} came first and lands: rebase on {self.cfg.main} and make the "
            "two work together",
            failing,
            [partner.lane],
        )

    def _land_on(self, base: Base, lp: LanePlan) -> Base | None:
        """`lp` landed again on `base` (None: it does not apply there)."""
        try:
            landed = self.lander.land(base.head, lp, base.surfaces)
        except BounceError:
            return None
        surfaces = base.surfaces.copy()
        surfaces.accept(lp, landed.change)
        step = Step(landed, surfaces)
        return Base(step.head, surfaces, [*base.steps, step])

    # -- what a test runs on, and the version ---------------------------------------------

    def _candidate(self, base: Base) -> tuple[Head, list[str]]:
        """The tree main would get with `base`'s lanes: their head and the version bump."""
        head, _, _ = self._with_bump(base.head, base.steps)
        return head, [s.lane.lane for s in base.steps]

    def _with_bump(self, head: Head, steps: list[Step]) -> tuple[Head, str | None, str | None]:
        requested = version.largest([s.lane.bump for s in steps if s.lane.bump])
        step = plan.version_step(self.applied_bump, requested)
        if step is None or not self.cfg.surfaces.version_files:
            return head, None, None
        bumped, summary, new = self.lander.bump(head, step)
        return bumped, summary, new


def _named(steps: list[Step]) -> str:
    names = [s.lane.lane for s in steps]
    if len(names) <= 4:
        return "lane" + ("s " if len(names) > 1 else " ") + ", ".join(names)
    return f"{len(names)} lanes ({names[0]}, {names[1]} .. {names[-1]})"


def _points(lo: int, hi: int, jobs: int) -> list[int]:
    """Up to `jobs` prefix lengths strictly between lo and hi, evenly spread (one: the
    middle, a plain bisection)."""
    return sorted({lo + (hi - lo) * i // (jobs + 1) for i in range(1, jobs + 1)} - {lo, hi})


def _bounce(
    lp: LanePlan, reason: str, said: str, run: TestRun, together: list[str] | None = None
) -> Bounce:
    message = said + (":\n" + run.output if run.output else "")
    return Bounce(lp.lane, lp.agent, reason, [], message, together or [])


def planned(lanes: list[str], batch: int) -> list[list[str]]:
    """The stacks a pass would test if every lane passed: `batch` lanes at a time."""
    return [lanes[i : i + batch] for i in range(0, len(lanes), batch)]
