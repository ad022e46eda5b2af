"""The keeper: a small process between the wave runner and one agent.

    python -I -S lanes/keeper.py --ctl FD --log PATH --input PATH --timeout S --grace S
        [--head BYTES] [--tail BYTES] [--cgroup DIR] -- COMMAND...

The runner starts it in a session of its own (the keeper leads it). With --cgroup, it first
moves itself into that cgroup v2 folder (the runner made it), so that everything the agent
starts is in it. It starts COMMAND in that session, in a process group of its own (not the
keeper's), with PATH --input on standard input and its standard output and error into a
pipe it reads, and it:

- keeps the output in the log, bounded: the first --head bytes, then the last --tail ones
  (the file is rewritten, through a temporary file and a rename, whenever more than twice
  --tail has piled up after the head), with a line saying how much was dropped; the log's
  folder is held open, so a claim directory archived while the agent runs (the agent
  released its lane) takes the whole log with it;
- stops the agent's process group (TERM, then KILL after --grace seconds) when the
  timeout passes, when the runner closes its end of the --ctl pipe, or when the keeper
  gets SIGTERM/SIGHUP. The runner closes that pipe to stop an agent; the kernel closes it
  when the runner dies, even by `kill -9`, so no agent outlives its runner;
- once the agent has exited, stops whatever it left running: the rest of its process group
  and of the keeper's session, and (on Linux, where the keeper is a child subreaper:
  PR_SET_CHILD_SUBREAPER) every orphaned descendant, which the kernel hands to the keeper
  even when it left the session with setsid; so nothing is left editing the worktree when
  the runner submits it;
- ignores every signal it may that would stop or end it (SIGINT, SIGQUIT, SIGUSR1, SIGTSTP,
  SIGALRM, ...: an agent sending them to its parent changes nothing; the agent itself gets
  them as usual); SIGTERM and SIGHUP make it stop the agent. SIGSTOP and SIGKILL cannot be
  caught: the runner watches for those itself (lanes/containment.py);
- reports to the runner on standard output, one JSON object per line: `started` (pid,
  subreaper, cgroup), then `exited` (code or signal, why it was stopped, seconds, log
  size), or `exec-failed`.

It imports nothing but the standard library and nothing of lanes, so it starts in a few
milliseconds (`-I -S`) and works whatever the agent does to its environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
HEAD = 256 * 1024
TAIL = 1024 * 1024
CHUNK = 64 * 1024


class BoundedLog:
    """The agent's output: its first `head` bytes and its last `tail` bytes, at most about
    head + 2 * tail on disk at any time, whatever the agent prints."""

    def __init__(self, path: Path, head: int, tail: int) -> None:
        self.path = path
        self.head_max = head
        self.tail_max = tail
        self.head = bytearray()
        self.tail = bytearray()  # what the file holds after the head (and the marker)
        self.total = 0
        self.dropped = 0
        # The folder is held open and every later open and rename is made relative to it:
        # when the claim directory is archived while the agent runs (the agent released
        # the lane), the log goes on in the archive, whole, and never reappears at the
        # old path (where a new claim of the lane may live by then).
        self.dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        self.fh = self._open(path.name, os.O_TRUNC)

    def write(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.head_max:
            take = data[: self.head_max - len(self.head)]
            self.head += take
            self.fh.write(take)
            data = data[len(take) :]
        if data:
            self.tail += data
            self.fh.write(data)
            if len(self.tail) > 2 * self.tail_max:
                self._compact()
        self.fh.flush()

    def note(self, text: str) -> None:
        """A line of the keeper's own, so a person reading the log sees what happened."""
        self.write(f"\n[lanes] {text}\n".encode())

    def marker(self) -> bytes:
        return (
            f"\n[lanes] ... {self.dropped} bytes of output dropped here: the log keeps the "
            f"first {self.head_max} and the last {self.tail_max} bytes ...\n"
        ).encode()

    def _compact(self) -> None:
        cut = len(self.tail) - self.tail_max
        self.dropped += cut
        del self.tail[:cut]
        tmp = self.path.name + ".tmp"
        with self._open(tmp, os.O_TRUNC) as out:
            out.write(self.head)
            out.write(self.marker())
            out.write(self.tail)
        # Whole, or the old file: never a half-written log.
        os.replace(tmp, self.path.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        self.fh.close()
        self.fh = self._open(self.path.name, os.O_APPEND)

    def _open(self, name: str, how: int) -> Any:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | how, 0o644, dir_fd=self.dir_fd)
        return os.fdopen(fd, "wb")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        if self.dir_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.dir_fd)
            self.dir_fd = -1


def _report(doc: dict[str, Any]) -> None:
    try:
        sys.stdout.write(json.dumps({"keeper": doc.pop("keeper"), **doc}) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # the runner is gone: the keeper's work goes on
        pass


def _subreaper() -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children() -> list[int]:
    """Live processes whose parent is the keeper (the agent, and orphans handed to it), or
    that are in the keeper's session (what the agent started, in any process group)."""
    me = os.getpid()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 4 or fields[0] == b"Z" or int(name) == me:
            continue
        if int(fields[1]) == me or int(fields[3]) == me:
            found.append(int(name))
    return found


def _reap() -> None:
    """Collect exited children (orphans the kernel handed over), never blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_leftovers(pgid: int, sig: int) -> None:
    _signal_group(pgid, sig)
    mine = os.getpgid(0)
    for pid in _children():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group not in (mine, pgid):
                os.killpg(group, sig)  # an orphan that made a group of its own: all of it
            os.kill(pid, sig)


# Signals left as they are: those that cannot be caught, those the keeper handles (TERM,
# HUP), those whose default is harmless (CHLD, CONT, WINCH, URG) and the faults.
_KEEP = {
    getattr(signal, name)
    for name in (
        "SIGKILL", "SIGSTOP", "SIGTERM", "SIGHUP", "SIGCHLD", "SIGCONT", "SIGWINCH", "SIGURG",
        "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT",
    )
    if hasattr(signal, name)
}  # fmt: skip


def _ignore_signals() -> list[int]:
    """Ignore every other signal the keeper may (an agent cannot stop or end its keeper
    with them); the list, so the agent's own are put back to their default."""
    ignored = []
    for sig in signal.valid_signals():
        if sig in _KEEP:
            continue
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError, RuntimeError):
            continue
        ignored.append(int(sig))
    return ignored


def _join_cgroup(folder: str) -> str:
    """'' once the keeper is in the cgroup (the agent will be too); else why not."""
    try:
        with open(os.path.join(folder, "cgroup.procs"), "w", encoding="ascii") as fh:
            fh.write("0\n")
    except OSError as exc:
        return f"{folder}: {exc.strerror or exc}"
    return ""


def _failpoint(name: str) -> None:
    """The tests' failpoints (lanes/failpoint.py, loaded by its path: the keeper imports
    nothing of lanes); nothing happens without LANES_FAILPOINT."""
    if not os.environ.get("LANES_FAILPOINT"):
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "lanes_failpoint", Path(__file__).with_name("failpoint.py")
    )
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.failpoint(name)


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    if "--" not in argv:
        raise SystemExit("keeper: usage: keeper.py --ctl FD --log PATH ... -- COMMAND...")
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1 :]
    if len(opts) % 2 or not command:
        raise SystemExit("keeper: options come in pairs, then -- COMMAND")
    return dict(zip(opts[::2], opts[1::2], strict=True)), command


def main(argv: list[str]) -> int:
    opts, command = _parse(argv)
    ctl = int(opts["--ctl"])
    timeout = float(opts.get("--timeout", "0"))
    grace = float(opts.get("--grace", "10"))
    log = BoundedLog(
        Path(opts["--log"]), int(opts.get("--head", HEAD)), int(opts.get("--tail", TAIL))
    )
    asked: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        asked.append(signal.Signals(signum).name)

    ignored = _ignore_signals()  # SIGINT among them: the runner decides, Ctrl-C reaches it
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    reaper = _subreaper()
    cgroup_error = _join_cgroup(opts["--cgroup"]) if opts.get("--cgroup") else "no cgroup"
    if opts.get("--cgroup") and cgroup_error:
        log.note(f"cannot join the agent's cgroup ({cgroup_error}): going on without it")
    started = time.monotonic()

    def as_before() -> None:  # in the agent, before it runs: its signals as they were
        for sig in ignored:
            signal.signal(sig, signal.SIG_DFL)

    try:
        with open(opts["--input"], "rb") as stdin:
            proc = subprocess.Popen(
                command,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,  # in the keeper's session, in a group of its own
                preexec_fn=as_before,  # the keeper has one thread: safe here
            )
    except OSError as exc:
        log.note(f"cannot start {command[0]}: {exc.strerror or exc}")
        log.close()
        _report({"keeper": "exec-failed", "error": f"{command[0]}: {exc.strerror or exc}"})
        return 0
    pgid = proc.pid
    _report({"keeper": "started", "pid": proc.pid, "subreaper": reaper, "cgroup": not cgroup_error})
    _failpoint("keeper-started")
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    os.set_blocking(out, False)
    sel = selectors.DefaultSelector()
    sel.register(out, selectors.EVENT_READ, "out")
    sel.register(ctl, selectors.EVENT_READ, "ctl")
    pidfd = -1
    with contextlib.suppress(AttributeError, OSError):
        pidfd = os.pidfd_open(proc.pid)
        sel.register(pidfd, selectors.EVENT_READ, "exit")
    stop = ""  # why the agent was stopped: "timeout", "stopped" (the runner), or ""
    term_at = 0.0
    killed = False
    out_open = True

    def read_out() -> None:
        nonlocal out_open
        while True:
            try:
                chunk = os.read(out, CHUNK)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                sel.unregister(out)
                out_open = False
                return
            log.write(chunk)

    while True:
        now = time.monotonic()
        if not stop:
            if timeout and now - started >= timeout:
                stop = "timeout"
                log.note(f"timeout after {timeout:g}s: TERM to the agent's process group")
            elif asked:
                stop = "stopped"
                log.note(f"{asked[0]} to the keeper: TERM to the agent's process group")
            if stop:
                _signal_group(pgid, signal.SIGTERM)
                term_at = now
        elif not killed and now - term_at >= grace:
            log.note(f"still running {grace:g}s after TERM: KILL to its process group")
            _signal_group(pgid, signal.SIGKILL)
            killed = True
        if pidfd < 0 and proc.poll() is not None:
            break
        wait = 0.1 if pidfd < 0 else 0.25
        for key, _ in sel.select(wait):
            if key.data == "out":
                read_out()
            elif key.data == "ctl":
                try:
                    data = os.read(ctl, 4096)
                except OSError:
                    data = b""
                if not data:  # the runner closed it, or died: stop the agent
                    sel.unregister(ctl)
                    asked.append("the runner's pipe closed")
            elif key.data == "exit":
                proc.wait()
        if proc.returncode is not None:
            break
    code = proc.wait()
    seconds = time.monotonic() - started
    # Whatever the agent left behind goes too, before the runner looks at the worktree.
    _reap()
    leftovers = _group_alive(pgid) or bool(_children())
    if leftovers:
        log.note("the agent exited; stopping what it left running (TERM, then KILL)")
        _signal_leftovers(pgid, signal.SIGTERM)
        until = time.monotonic() + grace
        while time.monotonic() < until:
            if out_open:
                for key, _ in sel.select(0.05):
                    if key.data == "out":
                        read_out()
            else:
                time.sleep(0.05)
            _reap()
            if not _group_alive(pgid) and not _children():
                break
        for _ in range(100):  # until nothing is left (an orphan may hand on another)
            _signal_leftovers(pgid, signal.SIGKILL)
            time.sleep(0.02)
            _reap()
            if not _group_alive(pgid) and not _children():
                break
    # The rest of the output: every writer is gone now, so the pipe ends (or soon).
    until = time.monotonic() + 1.0
    while out_open and time.monotonic() < until:
        for key, _ in sel.select(0.05):
            if key.data == "out":
                read_out()
    if stop == "timeout":
        log.note(f"the agent was stopped at its timeout ({timeout:g}s)")
    log.close()
    _report(
        {
            "keeper": "exited",
            "code": code if code >= 0 else None,
            "signal": signal.Signals(-code).name if code < 0 else None,
            "stop": stop,
            "killed": killed,
            "leftovers": leftovers,
            "seconds": round(seconds, 3),
            "log_bytes": log.total,
            "log_dropped": log.dropped,
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
