"""What holds one agent's processes, so that the wave runner can kill every one of them
itself, whatever the agent did to its keeper (docs/runner.md, "The keeper, and kill -9").

The keeper (lanes/keeper.py) stops its agent at the timeout and, as the agent's child
subreaper, stops whatever it left. But the agent runs as the same user as its keeper: it
can stop it (`kill -STOP $PPID`) or kill it (`kill -9 $PPID`). So the runner keeps, for each
agent, a `Containment`:

- on Linux, when the runner may write cgroup v2 (as root, or in a delegated subtree): a
  cgroup of the agent's own, a child of the runner's cgroup, named
  `lanes-<runner pid>-<wave>-<lane>`; the keeper moves itself into it before it starts the
  agent, so every process the agent starts is in it, even one that double-forked into a
  session of its own after its keeper was killed; `cgroup.kill` kills them all at once;
- always: the keeper's session (the keeper is a session leader; the agent runs in that
  session, in a process group of its own), the agent's process group, and every descendant
  of the keeper or of any of those (read from /proc), killed until none is left, the keeper
  last, so that orphans keep being handed to it (it is their subreaper) while they are
  being killed.

`kill` says how many processes it found; `unguaranteed` says, in words, what it could not
make sure of (no cgroup, and the keeper was already dead when the runner came). Only the
standard library; nothing here knows of lanes' claims.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_PREFIX = "lanes-"
_ROUNDS = 50  # kill rounds: each one until a scan finds nothing more


@dataclass(frozen=True)
class Proc:
    pid: int
    state: str
    ppid: int
    pgrp: int
    sid: int


def _stat(pid: int | str) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return Proc(int(pid), fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]))
    except (IndexError, ValueError):
        return None


def processes() -> dict[int, Proc]:
    """Every live process (zombies left out), from /proc; {} where there is none."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return {}
    found = {}
    for name in names:
        if name.isdigit():
            proc = _stat(name)
            if proc is not None and proc.state != "Z":
                found[proc.pid] = proc
    return found


def state(pid: int) -> str:
    """The process's state letter (R, S, D, T stopped, t traced, Z zombie), or '' when it
    is gone or cannot be read (no /proc)."""
    proc = _stat(pid)
    return proc.state if proc else ""


def session_of(pid: int) -> int | None:
    proc = _stat(pid)
    return proc.sid if proc else None


def descendants(table: dict[int, Proc], roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- cgroup v2 -------------------------------------------------------------------------------


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def cgroup_base() -> Path | None:
    """The runner's own cgroup v2 folder, where it may make children; None when there is
    none (not Linux, no cgroup v2 mounted, or it may not write there)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
        own = next(
            (
                line[3:]
                for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
                if line.startswith("0::")
            ),
            None,
        )
    except OSError:
        return None
    if own is None:
        return None
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[:1] != ["cgroup2"] or len(fields) < 5:
            continue
        root, mount = _unescape(fields[3]), _unescape(fields[4])
        if own != root and not own.startswith(root.rstrip("/") + "/"):
            continue
        base = Path(mount) / own[len(root) :].lstrip("/")
        if base.is_dir() and os.access(base, os.W_OK):
            return base
    return None


def _kill_cgroup(folder: Path) -> None:
    with contextlib.suppress(OSError):
        (folder / "cgroup.kill").write_text("1\n", encoding="ascii")


def _populated(folder: Path) -> bool:
    try:
        text = (folder / "cgroup.events").read_text(encoding="ascii")
    except OSError:
        return False
    return "populated 1" in text


def _remove_cgroup(folder: Path, seconds: float = 2.0) -> bool:
    """rmdir the cgroup, once the kernel has emptied it (it may take a moment after a kill)."""
    until = time.monotonic() + seconds
    while True:
        try:
            folder.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() > until:
                return False
            time.sleep(0.02)


def sweep() -> list[str]:
    """The cgroups of runners that are gone (killed with `kill -9`, say): whatever is still
    in them is killed (no agent outlives its runner), then they are removed. Their names."""
    base = cgroup_base()
    if base is None:
        return []
    found = []
    for folder in base.glob(f"{_PREFIX}*"):
        match = re.match(rf"{_PREFIX}(\d+)-", folder.name)
        if not match or not folder.is_dir() or _alive(int(match.group(1))):
            continue
        if _populated(folder):
            _kill_cgroup(folder)
        if _remove_cgroup(folder):
            found.append(folder.name)
    return found


# -- one agent -------------------------------------------------------------------------------


class Containment:
    """One agent's processes: its cgroup (or none), its keeper's pid (the session of the
    keeper and of everything the agent started without leaving it), its agent's pid (its
    process group)."""

    def __init__(self, cgroup: Path | None) -> None:
        self.cgroup = cgroup
        self.keeper = 0
        self.agent = 0
        self.joined = False  # the keeper said it is in the cgroup
        self.subreaper = False  # the keeper said it is the agent's child subreaper
        self.keeper_gone_first = False  # the keeper was dead when the runner had to kill

    @classmethod
    def make(cls, wave: str, lane: str) -> Containment:
        """With a cgroup of its own when the runner may make one (else without)."""
        base = cgroup_base()
        if base is None:
            return cls(None)
        folder = base / f"{_PREFIX}{os.getpid()}-{wave}-{lane}"
        try:
            if folder.is_dir():  # a run of this same process before: empty it first
                _kill_cgroup(folder)
                _remove_cgroup(folder)
            folder.mkdir()
        except OSError:
            return cls(None)
        if not (folder / "cgroup.kill").exists():  # Linux before 5.14: no cgroup.kill
            _remove_cgroup(folder)
            return cls(None)
        return cls(folder)

    def _members(self, table: dict[int, Proc]) -> set[int]:
        roots: set[int] = set()
        if self.cgroup is not None:
            with contextlib.suppress(OSError, ValueError):
                text = (self.cgroup / "cgroup.procs").read_text(encoding="ascii")
                roots.update(int(x) for x in text.split())
        ours = {x for x in (self.keeper, self.agent) if x > 1}  # the sessions and the group
        roots.update(p.pid for p in table.values() if p.sid in ours or p.pgrp in ours)
        if self.keeper:
            roots.add(self.keeper)
        found = {pid for pid in roots if pid in table} | descendants(table, roots)
        return found - {os.getpid(), self.keeper, 0, 1}

    def kill(self, keeper: bool = True) -> int:
        """SIGKILL to every process of the agent's that can be found, then (with `keeper`:
        only while the runner has not reaped it, or its pid may be another's) its keeper;
        then the cgroup's `cgroup.kill`, for whatever is in it still. How many were found."""
        if keeper and self.keeper and state(self.keeper) in ("", "Z"):
            self.keeper_gone_first = True
        seen: set[int] = set()
        for _ in range(_ROUNDS):
            targets = self._members(processes())
            if not targets:
                break
            seen |= targets
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        if keeper and self.agent > 1 and not os.path.isdir("/proc/self"):  # off Linux
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.agent, signal.SIGKILL)
        if keeper and self.keeper:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.keeper, signal.SIGKILL)
        if self.cgroup is not None:
            if _populated(self.cgroup):
                _kill_cgroup(self.cgroup)
            until = time.monotonic() + 2.0
            while _populated(self.cgroup) and time.monotonic() < until:
                time.sleep(0.02)
        for _ in range(_ROUNDS):  # what was handed on while the keeper died
            targets = self._members(processes()) - seen
            if not targets:
                break
            seen |= targets
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)
        return len(seen)

    def unguaranteed(self) -> str:
        """'' when every process of the agent's was found; else what could not be made sure
        of, in words (for the lane's reason)."""
        if self.cgroup is not None and self.joined:
            if _populated(self.cgroup):
                return f"processes in its cgroup {self.cgroup} could not be killed"
            return ""
        if not os.path.isdir("/proc/self"):
            return (
                "only the agent's process group could be killed (no /proc here): a process "
                "it started in another group may still run"
            )
        if self.keeper_gone_first or not self.subreaper:
            return (
                "a process the agent started in a session of its own (setsid) whose parent "
                "had exited could not be found, and may still run: the agent had no cgroup "
                "(lanes gives each agent one where the runner may write cgroup v2, e.g. as "
                "root)"
            )
        return ""

    def remove(self) -> None:
        if self.cgroup is not None:
            if _populated(self.cgroup):
                _kill_cgroup(self.cgroup)
            _remove_cgroup(self.cgroup)
