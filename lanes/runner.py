"""The wave runner: claims each lane of a plan, runs its agent, watches it, submits it.

`run(cfg, wave, plan, parallel, on_event)` does for a whole wave what an operator did by
hand in the post-mortem (docs/runner.md). It knows nothing of the terminal: every step is
an event (a plain dict) given to `on_event`, and the result is a `RunResult`; the CLI
renders both, and runs the integration pass and the gate after it (lanes never imports the
integrator outside the CLI).

One runner per wave per machine: a filelock in the state dir, held for the whole run; a
second runner of the wave gets `runner-running` (exit 3). For each lane, at most
`parallel` at a time:

1. where is it? integrated or submitted: finished, not run again; held by someone else:
   reported and left alone; held by this runner's own agent id on this host, with its
   worktree: resumed (an earlier run was interrupted: the agent restarts on its branch,
   its commits kept, told why the attempt before ended; a worktree whose HEAD is off the
   branch is put back only when that moves no file and leaves no commit behind, else the
   agent is not started: `off-branch`); otherwise claimed (lanes.claims.claim, which sets
   the worktree up);
2. the agent's command starts in the worktree through a keeper (lanes/keeper.py), in its
   own process group, the brief and the task on standard input, the lane's environment;
   its output goes to `agent.log` in the claim directory, bounded; the runner heartbeats
   the lane while it runs; `agent-start` goes into the ledger. The runner does not rely
   on the keeper alone (the agent can stop or kill it): each agent has a
   `lanes.containment.Containment` (a cgroup of its own where the runner may make one;
   always the keeper's session and the agent's group), and a keeper that dies without its
   report or stays stopped is lost (`keeper-lost`), one that has not ended its agent by
   timeout + 2 x grace + _MARGIN is past the runner's own deadline (`timeout`): either
   way the heartbeat stops and the runner kills the keeper and all of the agent's itself;
3. when it ends, the runner reads where the lane is now: released or reaped under the agent
   (`released`, `reaped`: the claim directory, and the log with it, are in the archive),
   claimed by someone else since (`held-elsewhere`), submitted by the agent itself; only a
   lane still held by this runner's agent is judged by what the agent did: exit 0 with a
   clean worktree on the lane's branch and something to hand over (a commit ahead of main,
   or a fragment) is submitted (lanes.submit; a refusal is kept with its recovery, and the
   lane waits); exit 0 with nothing is `no-work`; anything else (a failure, a timeout,
   uncommitted work, HEAD off the branch) leaves the lane claimed with its work, and the
   reason. `agent-exit` goes into the ledger with that outcome and reason.

What the worktree holds (before a resume, after the agent) is read by
lanes.agent_worktree; the plan's commands are checked by lanes.plan_commands.

Ctrl-C (SIGINT, also SIGTERM or SIGHUP to the runner) stops every agent (the keeper sends
TERM to its group, KILL after the grace period) and starts nothing new; the result says
where each lane is, and running again resumes. A second Ctrl-C does not wait for the
keepers: the runner exits at once, and the keepers still stop their agents, as they do when
the runner is killed with `kill -9` (the pipe the keeper watches closes with the runner).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lanes import claims, containment, git, plan_commands, state, worktrees
from lanes.agent_worktree import (
    LOG,
    PREVIOUS_LOG,
    back_on_branch,
    leftover_work,
    off_branch,
    resume_note,
)
from lanes.config import Config
from lanes.errors import BadInput, Contention, LanesError, Refused
from lanes.names import check_wave
from lanes.wave_plan import Plan, PlannedLane

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

INPUT = "agent-input.md"  # what the agent got on standard input: the brief, then the task
FINISHED = ("submitted", "integrated")
DEFAULT_PARALLEL = 4
_KEEPER = Path(__file__).with_name("keeper.py")
_POLL = 0.5  # seconds between looks at the running agents (output, commits, heartbeat)
_MARGIN = 3.0  # past timeout + 2 x grace, the runner stops the agent itself (below)
_STOPPED_LOST = 1.0  # a keeper stopped (SIGSTOP, a tracer) this long is lost


@dataclass
class LaneResult:
    """Where a lane is after the run, and why."""

    lane: str
    agent: str
    outcome: str  # submitted, integrated; still held by the runner's agent, its work kept:
    # failed, timeout, uncommitted, off-branch, no-work, cannot-start, keeper-lost,
    # submit-refused, interrupted; not held by it: released, reaped, held-elsewhere, claim-failed (and
    # bounced, once the CLI has integrated)
    reason: str
    worktree: str = ""
    branch: str = ""
    claim_dir: str = ""
    log: str = ""
    ran: bool = False  # its agent ran in this run
    resumed: bool = False  # it was held by this runner's agent before: restarted on its branch
    code: int | None = None  # the agent's exit code (None: a signal, a timeout, never ran)
    seconds: float | None = None
    commits: int | None = None  # ahead of main
    fragments: int | None = None
    error: dict[str, Any] | None = None  # the lanes error (code, message, hint, restore...)
    warnings: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.outcome in FINISHED

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "finished": self.finished}


@dataclass
class RunResult:
    wave: str
    plan: str
    lanes: list[LaneResult]
    interrupted: bool  # stopped by Ctrl-C (or SIGTERM/SIGHUP)

    @property
    def finished(self) -> bool:
        return not self.interrupted and all(r.finished for r in self.lanes)

    def to_json(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "plan": self.plan,
            "interrupted": self.interrupted,
            "finished": self.finished,
            "lanes": [r.to_json() for r in self.lanes],
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- one runner per wave per machine --------------------------------------------------------


@contextlib.contextmanager
def runner_lock(cfg: Config, wave: str) -> Iterator[None]:
    """Held for the whole run; the kernel drops it the instant the runner dies."""
    from filelock import FileLock, Timeout

    folder = cfg.state_dir / "runner"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f"{check_wave(wave)}.lock"))
    owner = folder / f"{wave}.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            held_by = owner.read_text(encoding="utf-8").strip()
        except OSError:
            held_by = "unknown"
        raise Contention(
            "runner-running",
            f"another lanes run of wave {wave} is running on this machine ({held_by})",
            hint=f"wait for it to finish (lanes status {wave} shows its lanes), or stop it "
            "with Ctrl-C; then run it again: it resumes",
            owner=held_by,
        ) from None
    try:
        tmp = folder / f".{wave}.owner.{os.getpid()}"
        tmp.write_text(f"pid {os.getpid()} since {_now()}\n", encoding="utf-8")
        os.replace(tmp, owner)
        yield
    finally:
        lock.release()


# -- what the agent gets --------------------------------------------------------------------


def agent_input(brief: str, task: str, resumed: str = "") -> str:
    """What the agent reads on standard input: its brief (`lanes brief`), for a resumed
    lane what the attempts before left (`resume_note`), then its task."""
    text = brief.rstrip("\n") + "\n\n"
    if resumed:
        text += "# This lane is resumed\n\n" + resumed.strip("\n") + "\n\n"
    return text + "# Your task\n\n" + task.strip("\n") + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def last_line(path: Path, width: int = 160) -> str:
    """The last line of output in a log, printable, for the live table."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            data = fh.read()
    except OSError:
        return ""
    for raw in reversed(data.decode("utf-8", "replace").splitlines()):
        text = "".join(c if c.isprintable() else " " for c in raw).strip()
        if text:
            return text[:width]
    return ""


# -- the run ----------------------------------------------------------------------------------


@dataclass
class _Agent:
    """A running agent, as the runner sees it."""

    lane: str
    branch: str
    claim_dir: Path
    log: Path
    ctl: int  # the runner's end of the keeper's pipe: closing it stops the agent
    started: float
    pen: containment.Containment
    closed: bool = False
    closed_at: float = 0.0  # when the runner closed it (a stop): the keeper has until then
    lost: bool = False  # the keeper stopped or died: no more heartbeat, everything killed
    pid: int | None = None
    next_beat: float = 0.0
    next_count: float = 0.0
    last_line: str = ""
    commits: int = -1
    fragments: int = -1


class Runner:
    def __init__(
        self, cfg: Config, wave: str, plan: Plan, parallel: int, on_event: OnEvent
    ) -> None:
        if parallel < 1:
            raise BadInput("bad-usage", f"--parallel {parallel}: give 1 or more")
        self.cfg = cfg
        self.wave = check_wave(wave)
        self.plan = plan
        self.parallel = parallel
        self._on_event = on_event
        self._lock = threading.RLock()
        self._agents: dict[str, _Agent] = {}
        self._stop = threading.Event()
        self._done = threading.Event()
        self._signals: list[str] = []
        self._results: dict[str, LaneResult] = {}
        self._host = socket.gethostname()
        self._beat_every = max(1.0, cfg.stale_after_seconds / 3)
        self._event_failed = False

    # -- events --

    def _emit(self, event: str, lane: str = "", **data: Any) -> None:
        doc = {
            "event": event,
            "wave": self.wave,
            "time": _now(),
            **({"lane": lane} if lane else {}),
        }
        doc.update(data)
        with self._lock:
            if self._event_failed:
                return
            try:
                self._on_event(doc)
            except Exception:  # a reader gone (a closed pipe): the run goes on, unwatched
                self._event_failed = True

    # -- the whole wave --

    def run(self) -> RunResult:
        self._preflight()
        with runner_lock(self.cfg, self.wave):
            containment.sweep()  # the cgroups of runners killed before: emptied, removed
            restore = self._trap_signals()
            try:
                self._run_all()
            finally:
                restore()
        lanes = [self._results[pl.name] for pl in self.plan.lanes]
        return RunResult(self.wave, str(self.plan.path), lanes, bool(self._signals))

    def _preflight(self) -> None:
        """What would make every lane fail is said once, before anything is claimed."""
        cfg = self.cfg
        if git.rev_parse(cfg.main_checkout, cfg.main) is None:
            raise BadInput(
                "no-main",
                f"the integration branch {cfg.main!r} does not exist",
                hint=f'commit to {cfg.main!r} first, or set main = "<branch>" in lanes.toml',
            )
        plan_commands.check(cfg, self.wave, self.plan, self._host)

    def _trap_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        before = {sig: signal.getsignal(sig) for sig in wanted}

        def on_signal(signum: int, frame: object) -> None:
            self._signals.append(signal.Signals(signum).name)
            if len(self._signals) > 1:  # a second one: do not wait for the keepers
                self._close_all()
                raise KeyboardInterrupt

        for sig in wanted:
            signal.signal(sig, on_signal)

        def restore() -> None:
            for sig, handler in before.items():
                signal.signal(sig, handler)

        return restore

    def _run_all(self) -> None:
        self._emit(
            "run-start",
            plan=str(self.plan.path),
            parallel=self.parallel,
            lanes=[pl.name for pl in self.plan.lanes],
            pid=os.getpid(),
        )
        todo: queue.Queue[PlannedLane] = queue.Queue()
        for pl in self.plan.lanes:
            todo.put(pl)
        workers = [
            threading.Thread(target=self._worker, args=(todo,), name=f"lane-{i}", daemon=True)
            for i in range(min(self.parallel, len(self.plan.lanes)))
        ]
        watcher = threading.Thread(target=self._watch, name="watch", daemon=True)
        for t in [*workers, watcher]:
            t.start()
        try:
            while any(t.is_alive() for t in workers):
                if self._signals and not self._stop.is_set():
                    self._begin_stop()
                for t in workers:
                    t.join(0.1)
        finally:
            self._done.set()
        watcher.join(5)

    def _begin_stop(self) -> None:
        self._stop.set()
        with self._lock:
            running = sorted(self._agents)
        self._emit("stopping", signal=self._signals[0], running=running)
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            for agent in self._agents.values():
                self._close(agent)

    def _close(self, agent: _Agent) -> None:
        with self._lock:
            if not agent.closed:
                agent.closed = True
                agent.closed_at = time.monotonic()
                with contextlib.suppress(OSError):
                    os.close(agent.ctl)

    def _worker(self, todo: queue.Queue[PlannedLane]) -> None:
        while True:
            try:
                pl = todo.get_nowait()
            except queue.Empty:
                return
            try:
                result = self._lane(pl)
            except LanesError as exc:
                result = LaneResult(pl.name, pl.agent, "failed", exc.message, error=exc.to_json())
            except Exception as exc:  # a bug in lanes: said, and the other lanes go on
                result = LaneResult(
                    pl.name,
                    pl.agent,
                    "failed",
                    f"the runner failed on this lane: {type(exc).__name__}: {exc}",
                    error={"error": "internal-error", "message": f"{type(exc).__name__}: {exc}"},
                )
            with self._lock:
                self._results[pl.name] = result
            self._emit("lane-result", **result.to_json())

    # -- one lane --

    def _lane(self, pl: PlannedLane) -> LaneResult:
        cfg, wave, name = self.cfg, self.wave, pl.name

        def result(outcome: str, reason: str, **more: Any) -> LaneResult:
            return LaneResult(name, pl.agent, outcome, reason, **more)

        if self._stop.is_set():
            return result("interrupted", "not started: the run was stopped")
        notes: list[str] = []  # what the runner did to the lane before its agent started
        hist = state.histories(cfg, wave).get(name)
        now = hist.state if hist else None
        where = {
            "worktree": str(cfg.worktree_path(wave, name)),
            "branch": cfg.branch(wave, name),
            "claim_dir": str(cfg.claim_dir(wave, name)),
        }
        if now == "integrated":
            return result("integrated", "integrated before this run: not run again", **where)
        if now == "submitted":
            return result("submitted", "submitted before this run: not run again", **where)
        resumed = False
        if now in ("claimed", "bounced"):
            record = claims.read_record(cfg.claim_dir(wave, name))
            holder = record.agent if record else (hist.agent if hist else "unknown")
            mine = record is not None and record.agent == pl.agent and record.host == self._host
            if not mine or record is None:
                return result(
                    "held-elsewhere",
                    f"held by {holder}" + (f" on {record.host}" if record else "") + ": left alone",
                    error={"error": "claimed", "holder": holder},
                    **where,
                )
            if not worktrees.is_ours(cfg, Path(record.worktree)):
                return result(
                    "claim-failed",
                    f"held by this runner's agent {pl.agent}, but its worktree "
                    f"{record.worktree} is gone",
                    error={
                        "error": "worktree-gone",
                        "hint": f"lanes release {wave} {name} (its work is saved), then run again",
                    },
                    **where,
                )
            claims.heartbeat(cfg, wave, name)
            worktree, branch, base = record.worktree, record.branch, record.base
            where["worktree"] = worktree
            off = off_branch(Path(worktree), branch)
            ok, how = back_on_branch(Path(worktree), branch)
            if not ok:
                return result(
                    "off-branch",
                    f"not started: {off}; the lane stays claimed with its work: {how}, then "
                    "run lanes run again",
                    **where,
                )
            if how:
                notes.append(f"{off}: {how}")
            base = git.merge_base(cfg.main_checkout, cfg.main, branch) or base
            resumed = True
            self._emit(
                "claim",
                name,
                agent=pl.agent,
                worktree=worktree,
                branch=branch,
                base=base,
                resumed=True,
                kept=True,
            )
        else:
            try:
                got = claims.claim(cfg, wave, name, pl.agent)
            except Contention as exc:
                holder = str(exc.extra.get("holder", "unknown"))
                return result(
                    "held-elsewhere", f"held by {holder}: left alone", error=exc.to_json(), **where
                )
            except Refused as exc:
                if exc.code == "lane-integrated":
                    return result("integrated", "integrated before this run", **where)
                return result("claim-failed", exc.message, error=exc.to_json(), **where)
            except LanesError as exc:
                return result("claim-failed", exc.message, error=exc.to_json(), **where)
            worktree, branch, base = got.worktree, got.branch, got.base
            resumed = got.resumed
            self._emit(
                "claim",
                name,
                agent=pl.agent,
                worktree=worktree,
                branch=branch,
                base=base,
                resumed=got.resumed,
                kept=False,
            )
        where["worktree"] = worktree
        if self._stop.is_set():
            return result("interrupted", "claimed, not started: the run was stopped", **where)
        return self._agent(pl, worktree, branch, resumed, where, notes)

    def _agent(
        self,
        pl: PlannedLane,
        worktree: str,
        branch: str,
        resumed: bool,
        where: dict[str, str],
        notes: list[str],
    ) -> LaneResult:
        cfg, wave, name = self.cfg, self.wave, pl.name
        claim_dir = cfg.claim_dir(wave, name)
        log = claim_dir / LOG
        if log.exists():
            os.replace(log, claim_dir / PREVIOUS_LOG)
        stdin_path = claim_dir / INPUT
        from lanes import brief

        note = resume_note(cfg, wave, name, Path(worktree), branch, notes) if resumed else ""
        text = agent_input(brief.brief_text(cfg, wave, name), pl.task, note)
        _write_atomic(stdin_path, text)
        env = git.clean_env()  # an inherited GIT_DIR would point the agent's git elsewhere
        if "GIT_TERMINAL_PROMPT" not in os.environ:  # the agent's own git: as the user has it
            env.pop("GIT_TERMINAL_PROMPT", None)
        env.update(brief.lane_env(cfg, wave, name))
        env.update(pl.env)
        pen = containment.Containment.make(wave, name)
        read_end, write_end = os.pipe()
        command = [
            sys.executable, "-I", "-S", str(_KEEPER),
            "--ctl", str(read_end), "--log", str(log), "--input", str(stdin_path),
            "--timeout", str(pl.timeout_seconds), "--grace", str(pl.grace_seconds),
            *(["--cgroup", str(pen.cgroup)] if pen.cgroup else []),
            "--", *pl.command,
        ]  # fmt: skip
        try:
            keeper = subprocess.Popen(
                command,
                cwd=worktree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(read_end,),
                start_new_session=True,  # Ctrl-C on the terminal reaches the runner alone
            )
        except BaseException:
            os.close(write_end)
            pen.remove()
            raise
        finally:
            os.close(read_end)
        pen.keeper = keeper.pid
        agent = _Agent(name, branch, claim_dir, log, write_end, time.monotonic(), pen)
        with self._lock:
            self._agents[name] = agent
            if self._stop.is_set():
                self._close(agent)
        try:
            report = self._follow(pl, agent, keeper, resumed)
        finally:
            with self._lock:
                self._agents.pop(name, None)
            self._close(agent)
            pen.remove()
        res = self._after(pl, agent, report, resumed, where)
        res.warnings[:0] = notes
        return res

    def _follow(
        self, pl: PlannedLane, agent: _Agent, keeper: subprocess.Popen[bytes], resumed: bool
    ) -> dict[str, Any]:
        """The keeper's reports until it exits; `agent-start` into the ledger. Never blocks
        without a deadline: a keeper that dies without its report, or stays stopped, is
        lost; one that has not ended its agent by timeout + 2 x grace + _MARGIN (or, once
        the runner stopped it, by 2 x grace + _MARGIN) is past the runner's deadline. Either
        way the runner kills the keeper and every process of the agent's itself."""
        assert keeper.stdout is not None
        fd = keeper.stdout.fileno()
        os.set_blocking(fd, False)
        sel = selectors.DefaultSelector()  # epoll: no limit on the fd's number
        sel.register(fd, selectors.EVENT_READ)
        allowance = 2 * pl.grace_seconds + _MARGIN
        deadline = agent.started + pl.timeout_seconds + allowance if pl.timeout_seconds else 0.0
        said: list[str] = []
        report: dict[str, Any] = {}
        pending = b""
        why = ""  # "" (the keeper reported and ended), "dead", "stopped" or "deadline"
        past_timeout = False
        stopped_since = 0.0
        while True:
            now = time.monotonic()
            limits = [deadline] if deadline else []
            if agent.closed_at:
                limits.append(agent.closed_at + allowance)
            if limits and now >= min(limits):
                why = "deadline"  # the timeout's own, or the stop's, whichever came first
                past_timeout = bool(deadline) and min(limits) == deadline
                break
            if containment.state(keeper.pid) in ("T", "t"):
                stopped_since = stopped_since or now
                if now - stopped_since >= _STOPPED_LOST:
                    why = "stopped"
                    break
            else:
                stopped_since = 0.0
            wait = min([0.25, *(x - now for x in limits)])
            if not sel.select(max(wait, 0.01)):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                why = "" if report else "dead"
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                try:
                    doc = json.loads(line) if line.startswith('{"keeper"') else None
                except ValueError:
                    doc = None
                if not isinstance(doc, dict):
                    said = [*said[-19:], line]
                elif doc["keeper"] == "started" and agent.pid is None:
                    self._started(pl, agent, keeper, doc, resumed)
                elif doc["keeper"] in ("exited", "exec-failed"):
                    report = doc  # the last one: the keeper's own is the last it writes
        sel.close()
        seconds = round(time.monotonic() - agent.started, 3)
        if not why:
            try:
                keeper.wait(5)
            except subprocess.TimeoutExpired:
                why = "deadline"
        if why:
            agent.lost = True  # no more heartbeat: the lane is not worked on any more
        # A lost keeper is killed with the rest (its pid is not reused: it is not reaped
        # yet); after a plain end, what escaped it (the cgroup, the session) goes.
        found = agent.pen.kill(keeper=bool(why))
        with contextlib.suppress(subprocess.TimeoutExpired):
            keeper.wait(5)
        keeper.stdout.close()
        if not why:
            if found:  # escaped the keeper; the cgroup or the session scan had them
                report["leftovers"] = True
            return report
        missed = agent.pen.unguaranteed()
        killed = (
            f"the runner killed its keeper and every process of the agent's it found ({found})"
            + (f"; {missed}" if missed else "")
        )
        if why == "deadline":
            stop = "timeout" if past_timeout or not agent.closed_at else "stopped"
            return {
                "keeper": "deadline",
                "stop": stop,
                "code": None,
                "signal": "SIGKILL",
                "killed": True,
                "leftovers": found > 0,
                "seconds": seconds,
                "error": f"its keeper did not end it in time: {killed}",
            }
        if why == "stopped":
            how = "its keeper was stopped (SIGSTOP or a tracer: by the agent, or by hand)"
        else:
            how = "its keeper ended without a report (killed: by the agent, or by hand)" + (
                ": " + " / ".join(said[-3:]) if said else f", exit {keeper.returncode}"
            )
        return {
            "keeper": "lost",
            "how": why,
            "code": None,
            "signal": None,
            "killed": True,
            "leftovers": found > 0,
            "seconds": seconds,
            "error": f"{how} {seconds:g}s after the start; {killed}",
        }

    def _started(
        self,
        pl: PlannedLane,
        agent: _Agent,
        keeper: subprocess.Popen[bytes],
        doc: dict[str, Any],
        resumed: bool,
    ) -> None:
        """The keeper's `started`: the agent's pid (only one in the keeper's session: the
        agent could write a line of its own into the keeper's output), `agent-start`."""
        try:
            pid = int(doc["pid"])
        except (KeyError, TypeError, ValueError):
            return
        if containment.session_of(pid) not in (None, keeper.pid):
            return
        agent.pid = agent.pen.agent = pid
        agent.pen.joined = doc.get("cgroup") is True
        agent.pen.subreaper = doc.get("subreaper") is True
        agent.next_beat = time.monotonic() + self._beat_every
        claims.ledger(self.cfg, self.wave).append(
            "agent-start",
            pl.name,
            pl.agent,
            pid=pid,
            command=list(pl.command),
            resumed=resumed,
            log=str(agent.log),
        )
        self._emit(
            "agent-start",
            pl.name,
            agent=pl.agent,
            pid=pid,
            command=list(pl.command),
            resumed=resumed,
            log=str(agent.log),
            timeout_seconds=pl.timeout_seconds,
        )

    def _after(
        self,
        pl: PlannedLane,
        agent: _Agent,
        report: dict[str, Any],
        resumed: bool,
        where: dict[str, str],
    ) -> LaneResult:
        """The lane's outcome once its agent has ended: first where the lane is now (the
        agent may have released or submitted it), then, for a lane this runner's agent
        still holds, what the agent did; `agent-exit` into the ledger, saying the same."""
        cfg, wave, name = self.cfg, self.wave, pl.name
        worktree, branch = Path(where["worktree"]), where["branch"]
        seconds = float(report.get("seconds", time.monotonic() - agent.started))
        base = LaneResult(
            name,
            pl.agent,
            "failed",
            "",
            worktree=where["worktree"],
            branch=branch,
            claim_dir=where["claim_dir"],
            log=str(agent.log),
            ran=True,
            resumed=resumed,
        )
        base.seconds = round(seconds, 3)
        code = report.get("code")
        base.code = code if isinstance(code, int) else None
        stop = report.get("stop", "")
        # How the agent ended: `ended` in words, `how_outcome` "" for a plain exit 0.
        if report["keeper"] in ("exec-failed", "lost"):
            base.ran = report["keeper"] == "lost"
            ended = str(report.get("error", "the agent could not be started"))
            shown_code: Any = None
            how_outcome = "cannot-start" if report["keeper"] == "exec-failed" else "keeper-lost"
        elif report["keeper"] == "deadline":  # the keeper is alive but did not end it
            if stop == "timeout":
                how_outcome, shown_code = "timeout", "timeout"
                ended = f"timed out after {pl.timeout_seconds}s, and {report['error']}"
            else:
                how_outcome, shown_code = "interrupted", None
                by = self._signals[0] if self._signals else "the runner"
                ended = f"stopped by {by}, and {report['error']}"
        else:
            sig = report.get("signal")
            how = f"exit {code}" if code is not None else f"killed by {sig}"
            killed = " (KILL after the grace period)" if report.get("killed") else ""
            shown_code = code
            if stop == "timeout":
                how_outcome = "timeout"
                shown_code = "timeout"
                ended = (
                    f"timed out after {pl.timeout_seconds}s: stopped (TERM to its process "
                    f"group){killed}"
                )
            elif stop == "stopped":
                how_outcome = "interrupted"
                by = self._signals[0] if self._signals else "a signal to its keeper"
                ended = f"stopped by {by} ({how}){killed}"
            elif code != 0:
                how_outcome, ended = "failed", f"the agent failed ({how})"
            else:
                how_outcome, ended = "", "the agent exited 0"
        base.commits = git.commits_ahead(cfg.main_checkout, cfg.main, branch)
        now, info = self._lane_now(pl)
        next_step = ""
        if now == "mine":
            frag_dir = Path(where["claim_dir"]) / claims.FRAGMENTS
            base.fragments = len(list(frag_dir.glob("*.json"))) if frag_dir.is_dir() else 0
            outcome, reason = how_outcome, ended
            if not outcome:
                left_outcome, left = leftover_work(cfg, worktree, branch)
                if left_outcome:
                    outcome, reason = left_outcome, f"the agent exited 0 but {left}"
                elif base.commits == 0 and base.fragments == 0:
                    outcome, reason = (
                        "no-work",
                        f"the agent exited 0 without a commit ahead of {cfg.main} or a "
                        "fragment: nothing to submit",
                    )
                else:
                    outcome = "submitted"
            if outcome == "worktree-gone":
                outcome = "failed"
                base.error = {
                    "error": "worktree-gone",
                    "hint": f"lanes release {wave} {name} (what was saved is kept), then run "
                    "lanes run again: it claims the lane anew, its branch keeps its commits",
                }
                next_step = "the lane is still claimed, without a worktree: " + base.error["hint"]
            else:
                next_step = self._next_step(pl, outcome, worktree, branch)
            exit_outcome = "submit" if outcome == "submitted" else outcome
        elif now in ("submitted", "integrated"):
            outcome = exit_outcome = now
            reason = (
                f"the agent submitted the lane itself ({ended})"
                if now == "submitted"
                else f"the lane was submitted and integrated while its agent ran ({ended})"
            )
        else:  # released, reaped, or held by someone else since
            outcome = exit_outcome = now
            archived = str(info.get("archived_to") or "")
            if archived:
                base.claim_dir = archived
                moved = Path(archived) / LOG
                base.log = str(moved) if moved.exists() else ""
            else:
                base.claim_dir = base.log = ""
            if not worktree.is_dir():
                base.worktree = ""  # removed with the release (kept by --keep-worktree)
            by = {
                "released": "released (by its agent, or by hand: lanes release)",
                "reaped": "reaped (lanes gc: its heartbeat had gone stale)",
            }.get(now, "released")
            reason = f"{ended}, and the lane was {by} while it ran"
            if now == "held-elsewhere":
                holder = info.get("holder") or "unknown"
                reason += f", and is held by {holder} since: left alone"
                base.error = {"error": "claimed", "holder": holder}
            saved = (
                f": its claim directory (the saved work, the log) is in {archived}"
                if archived
                else ""
            )
            next_step = (
                f"it is not claimed by {pl.agent} any more{saved}; its branch {branch} keeps "
                "its commits"
                + ("; running lanes run again claims it anew" if now != "held-elsewhere" else "")
            )
        claims.ledger(cfg, wave).append(
            "agent-exit",
            name,
            pl.agent,
            code=shown_code,
            signal=report.get("signal"),
            seconds=base.seconds,
            outcome=exit_outcome,
            reason=reason,
            killed=bool(report.get("killed")),
            leftovers=bool(report.get("leftovers")),
            log_bytes=report.get("log_bytes"),
            log_dropped=report.get("log_dropped"),
        )
        self._emit(
            "agent-exit",
            name,
            agent=pl.agent,
            code=shown_code,
            signal=report.get("signal"),
            seconds=base.seconds,
            outcome=exit_outcome,
            reason=reason,
            killed=bool(report.get("killed")),
            log_bytes=report.get("log_bytes"),
            log_dropped=report.get("log_dropped"),
        )
        base.outcome = outcome
        base.reason = reason + (f"; {next_step}" if next_step else "")
        if exit_outcome == "submit":
            base.reason = ""
            return self._submit(base)
        return base

    def _next_step(self, pl: PlannedLane, outcome: str, worktree: Path, branch: str) -> str:
        """For a lane this runner's agent still holds: what to do, said only as it is."""
        wave, name = self.wave, pl.name
        if outcome in ("failed", "timeout", "interrupted"):
            return (
                f"the lane stays claimed with its work in {worktree}: run lanes run again to "
                "restart its agent there"
            )
        if outcome == "keeper-lost":
            return (
                f"the lane stays claimed with its work in {worktree}: run lanes run again to "
                "restart its agent there (an agent that stops or kills its keeper is killed "
                "each time: if it was the agent, change what it runs)"
            )
        if outcome == "uncommitted":
            return (
                f"the lane stays claimed with its work: commit what is listed (then lanes "
                f"submit in {worktree}), or run lanes run again: its agent restarts there, "
                "told what is uncommitted"
            )
        if outcome == "off-branch":
            ok, fix = back_on_branch(worktree, branch, change=False)
            if ok:
                return f"the lane stays claimed with its work, not submitted: {fix}"
            return (
                f"the lane stays claimed with its work, not submitted: {fix}; then run lanes "
                "run again"
            )
        if outcome == "no-work":
            return (
                "the lane stays claimed, nothing was submitted: read its log; run lanes run "
                f"again to restart its agent, or lanes release {wave} {name} to give the lane up"
            )
        if outcome == "cannot-start":
            return (
                f"the lane stays claimed, nothing ran in it: fix lane[{pl.index}].command in "
                "the plan so it can be executed, then run lanes run again"
            )
        return ""

    def _lane_now(self, pl: PlannedLane) -> tuple[str, dict[str, Any]]:
        """Where the lane is, read again: "mine" (held by this runner's agent here), its
        state (submitted, integrated, released, reaped), or "held-elsewhere"; with
        `archived_to` (where the claim directory went) and `holder` when it is known."""
        cfg, wave, name = self.cfg, self.wave, pl.name
        hist = state.histories(cfg, wave).get(name)
        now = hist.state if hist else "released"
        if now in ("submitted", "integrated"):
            return now, {}
        if now in ("claimed", "bounced"):
            record = claims.read_record(cfg.claim_dir(wave, name))
            if record is not None and (record.agent, record.host) == (pl.agent, self._host):
                return "mine", {}
            holder = record.agent if record else (hist.agent if hist else "")
            return "held-elsewhere", {"holder": holder, **self._retired(name)}
        return now, self._retired(name)

    def _retired(self, name: str) -> dict[str, Any]:
        """Where the lane's last release or reap moved its claim directory (the ledger row
        says; else the newest such folder in the wave's archive)."""
        for ev in reversed(claims.ledger(self.cfg, self.wave).events()):
            if ev.lane == name and ev.event in ("release", "reap"):
                if ev.details.get("archived_to"):
                    return {"archived_to": str(ev.details["archived_to"])}
                break
        import re

        mine = re.compile(rf"{re.escape(name)}-(released|reaped)-\d{{8}}T\d{{6}}-[0-9a-f]+")
        folder = self.cfg.wave_dir(self.wave) / ".archive"
        names = os.listdir(folder) if folder.is_dir() else []
        found = sorted(folder / n for n in names if mine.fullmatch(n))
        return {"archived_to": str(found[-1])} if found else {}

    def _submit(self, res: LaneResult) -> LaneResult:
        from lanes import submit

        cfg, wave, name = self.cfg, self.wave, res.lane
        try:
            done = submit.submit(cfg, wave, name)
        except Refused as exc:
            if exc.code == "lane-not-open" and state.lane_state(cfg, wave, name) == "submitted":
                res.outcome, res.reason = "submitted", "the agent submitted it itself"
                return res
            res.outcome, res.reason, res.error = "submit-refused", exc.message, exc.to_json()
            self._emit("submit-refused", name, agent=res.agent, **exc.to_json())
            return res
        except LanesError as exc:
            res.outcome, res.reason, res.error = "submit-refused", exc.message, exc.to_json()
            self._emit("submit-refused", name, agent=res.agent, **exc.to_json())
            return res
        res.outcome, res.reason = "submitted", ""
        res.commits, res.fragments, res.warnings = done.commits, done.fragments, done.warnings
        self._emit(
            "submit",
            name,
            agent=res.agent,
            head=done.head,
            commits=done.commits,
            fragments=done.fragments,
            warnings=done.warnings,
        )
        return res

    # -- watching --

    def _watch(self) -> None:
        """Every running agent: its heartbeat, its last line of output, its commits."""
        while not self._done.wait(_POLL):
            with self._lock:
                agents = list(self._agents.values())
            now = time.monotonic()
            for agent in agents:
                if agent.pid is None or agent.closed or agent.lost:
                    continue
                if now >= agent.next_beat:
                    agent.next_beat = now + self._beat_every
                    try:
                        claims.heartbeat(self.cfg, self.wave, agent.lane)
                    except LanesError as exc:
                        self._emit("heartbeat-failed", agent.lane, **exc.to_json())
                        if exc.code in ("not-held", "lane-integrated"):
                            agent.next_beat = float("inf")  # released under it: said once
                changed = False
                line = last_line(agent.log)
                if line != agent.last_line:
                    agent.last_line, changed = line, True
                if now >= agent.next_count:
                    agent.next_count = now + 2.0
                    try:
                        commits = git.commits_ahead(
                            self.cfg.main_checkout, self.cfg.main, agent.branch
                        )
                    except LanesError:
                        commits = agent.commits
                    frag_dir = agent.claim_dir / claims.FRAGMENTS
                    frags = len(list(frag_dir.glob("*.json"))) if frag_dir.is_dir() else 0
                    if (commits, frags) != (agent.commits, agent.fragments):
                        agent.commits, agent.fragments, changed = commits, frags, True
                if changed:
                    self._emit(
                        "progress",
                        agent.lane,
                        last_line=agent.last_line,
                        commits=max(agent.commits, 0),
                        fragments=max(agent.fragments, 0),
                        seconds=round(now - agent.started, 1),
                    )


def run(cfg: Config, wave: str, plan: Plan, parallel: int, on_event: OnEvent) -> RunResult:
    """Run the wave's plan (module docstring); every step is an event given to `on_event`."""
    return Runner(cfg, wave, plan, parallel, on_event).run()
