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
   the lane while it runs; `agent-start` goes into the ledger;
3. when it ends, the runner reads where the lane is now: released or reaped under the agent
   (`released`, `reaped`: the claim directory, and the log with it, are in the archive),
   claimed by someone else since (`held-elsewhere`), submitted by the agent itself; only a
   lane still held by this runner's agent is judged by what the agent did: exit 0 with a
   clean worktree on the lane's branch and something to hand over (a commit ahead of main,
   or a fragment) is submitted (lanes.submit; a refusal is kept with its recovery, and the
   lane waits); exit 0 with nothing is `no-work`; anything else (a failure, a timeout,
   uncommitted work, HEAD off the branch) leaves the lane claimed with its work, and the
   reason. `agent-exit` goes into the ledger with that outcome and reason.

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

from lanes import claims, git, state, worktrees
from lanes.config import Config
from lanes.errors import BadInput, Contention, LanesError, Refused
from lanes.names import check_wave
from lanes.wave_plan import Plan, PlannedLane

Event = dict[str, Any]
OnEvent = Callable[[Event], None]

LOG = "agent.log"
PREVIOUS_LOG = "agent.prev.log"  # the log of the run before, when the lane is resumed
INPUT = "agent-input.md"  # what the agent got on standard input: the brief, then the task
FINISHED = ("submitted", "integrated")
DEFAULT_PARALLEL = 4
_KEEPER = Path(__file__).with_name("keeper.py")
_POLL = 0.5  # seconds between looks at the running agents (output, commits, heartbeat)


@dataclass
class LaneResult:
    """Where a lane is after the run, and why."""

    lane: str
    agent: str
    outcome: str  # submitted, integrated; still held by the runner's agent, its work kept:
    # failed, timeout, uncommitted, off-branch, no-work, cannot-start, submit-refused,
    # interrupted; not held by it: released, reaped, held-elsewhere, claim-failed (and
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


# -- the plan's commands, before anything is claimed ----------------------------------------

_HINT_PATH = "install it, or set PATH in the lane's env, or give its absolute path"
_HINT_ABSOLUTE = "give the path of an executable file (chmod +x it)"
_HINT_RELATIVE = (
    "a relative path runs in the lane's worktree, which is checked out from main (or from "
    "the lane's branch): commit the program there with its executable bit, or give an "
    "absolute path; for a program [setup] makes in the worktree, run it through one on "
    'PATH, e.g. command = ["sh", "-c", "exec .venv/bin/agent -p"]'
)


def _executable(path: str) -> str:
    """'' when `path` is a file this user may execute; else what it is, in words."""
    if not os.path.lexists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory"
    if not os.path.isfile(path):
        return "is not a regular file" + (" (a broken symlink)" if os.path.islink(path) else "")
    if not os.access(path, os.X_OK):
        return f"is not executable (chmod +x {path})"
    return ""


def _in_tree(repo: Path, rev: str, rel: str, hops: int = 0) -> str:
    """'' when `rel` is an executable file in `rev`'s tree (a symlink followed, inside the
    tree or to an executable file outside it); else what it is, in words."""
    res = git.run(["ls-tree", "--full-tree", "-z", rev, "--", rel], repo, check=False)
    entry = res.stdout.split("\0")[0] if res.returncode == 0 else ""
    if not entry:
        return f"is not in the tree of {rev}"
    mode, kind, sha = entry.split("\t", 1)[0].split()
    if mode == "100755":
        return ""
    if mode == "120000" and hops < 8:
        target = git.run(["cat-file", "blob", sha], repo).stdout
        if target.startswith("/"):
            what = _executable(target)
            return f"is a symlink to {target}, which {what}" if what else ""
        nxt = os.path.normpath(os.path.join(os.path.dirname(rel), target))
        if nxt == ".." or nxt.startswith("../"):
            return f"is a symlink out of the worktree ({target})"
        return _in_tree(repo, rev, nxt, hops + 1)
    if mode == "100644":
        return (
            f"is not executable in {rev} (mode 100644: git update-index --chmod=+x {rel}, "
            "then commit it)"
        )
    return f"is a {kind} in {rev}, not an executable file"


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
    closed: bool = False
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
        for pl in self.plan.lanes:
            what = self._command_problem(pl)
            if what:
                program = pl.command[0]
                raise BadInput(
                    "bad-plan",
                    f"plan {self.plan.path}: lane[{pl.index}].command (lane {pl.name}): "
                    f"{program!r} {what}; nothing was claimed",
                    hint=_HINT_PATH
                    if "/" not in program
                    else _HINT_ABSOLUTE
                    if os.path.isabs(program)
                    else _HINT_RELATIVE,
                    keys=[f"lane[{pl.index}].command"],
                )

    def _command_problem(self, pl: PlannedLane) -> str:
        """'' when the lane's program can be started where it will run; else why not. A
        bare name is looked up on PATH (the plan's, if its env sets one); an absolute path
        must be an executable file; a relative one is relative to the lane's worktree, so
        it is looked for in the worktree when this runner's agent holds the lane with it
        (a resume), else in the tree a claim would check out (the lane's branch when it
        exists, else main's tip): committed, with its executable bit. Only files are read
        (not the ledger: on a remote, reading it writes its rendering in the inbox)."""
        import shutil

        cfg, program = self.cfg, pl.command[0]
        if "/" not in program:
            path_var = pl.env.get("PATH", os.environ.get("PATH", os.defpath))
            return "" if shutil.which(program, path=path_var) else "is not a program on PATH"
        if os.path.isabs(program):
            return _executable(program)
        rel = os.path.normpath(program)
        if rel == ".." or rel.startswith("../"):
            return "points outside the lane's worktree"
        branch = cfg.branch(self.wave, pl.name)
        record = claims.read_record(cfg.claim_dir(self.wave, pl.name))
        if record is not None:
            if (record.agent, record.host) != (pl.agent, self._host):
                return ""  # someone else's: left alone, not run
            worktree = Path(record.worktree)
            if worktrees.is_ours(cfg, worktree):
                what = _executable(str(worktree / rel))
                return f"{what} in the lane's worktree {worktree}" if what else ""
        rev = branch if git.branch_exists(cfg.main_checkout, branch) else cfg.main
        return _in_tree(cfg.main_checkout, rev, rel)

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
        read_end, write_end = os.pipe()
        command = [
            sys.executable, "-I", "-S", str(_KEEPER),
            "--ctl", str(read_end), "--log", str(log), "--input", str(stdin_path),
            "--timeout", str(pl.timeout_seconds), "--grace", str(pl.grace_seconds),
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
            raise
        finally:
            os.close(read_end)
        agent = _Agent(name, branch, claim_dir, log, write_end, time.monotonic())
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
        res = self._after(pl, agent, report, resumed, where)
        res.warnings[:0] = notes
        return res

    def _follow(
        self, pl: PlannedLane, agent: _Agent, keeper: subprocess.Popen[bytes], resumed: bool
    ) -> dict[str, Any]:
        """The keeper's reports until it exits; `agent-start` into the ledger."""
        assert keeper.stdout is not None
        said: list[str] = []
        report: dict[str, Any] = {}
        log = claims.ledger(self.cfg, self.wave)
        for raw in keeper.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                doc = json.loads(line) if line.startswith('{"keeper"') else None
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                said = [*said[-19:], line]
                continue
            if doc["keeper"] == "started":
                agent.pid = int(doc["pid"])
                agent.next_beat = time.monotonic() + self._beat_every
                log.append(
                    "agent-start",
                    pl.name,
                    pl.agent,
                    pid=agent.pid,
                    command=list(pl.command),
                    resumed=resumed,
                    log=str(agent.log),
                )
                self._emit(
                    "agent-start",
                    pl.name,
                    agent=pl.agent,
                    pid=agent.pid,
                    command=list(pl.command),
                    resumed=resumed,
                    log=str(agent.log),
                    timeout_seconds=pl.timeout_seconds,
                )
            else:
                report = doc
        keeper.stdout.close()
        keeper.wait()
        if not report:
            # The keeper died (killed by hand): its agent must not go on alone.
            if agent.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(agent.pid, signal.SIGKILL)
            report = {
                "keeper": "lost",
                "error": "the keeper process ended without a report"
                + (": " + " / ".join(said[-3:]) if said else f" (exit {keeper.returncode})"),
            }
        return report

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
            how_outcome = "cannot-start" if report["keeper"] == "exec-failed" else "failed"
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
                if agent.pid is None or agent.closed:
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
