"""What a new lane's worktree gets before its agent starts: copies, links, commands.

After the checkout (docs/setup.md):
1. **copy**: the untracked files of the main checkout matched by `[setup] copy` (paths from
   the root) or by `.worktreeinclude` (gitignore patterns) that git ignores in the lane are
   copied to the same path in the worktree: cloned (a reflink) where the filesystem can,
   else copied; never a hard link, never over a file the worktree has, never through a
   symlink; a symlink is copied as a symlink, never followed.
2. **link**: each `[setup] link` folder of the main checkout that git ignores becomes an
   absolute symlink to it in the worktree.
3. **commands**: each `[setup] commands` entry runs in the worktree, in order, through
   `/bin/sh -c`, with the lane's environment; its output goes to `setup.log` in the claim
   directory (bounded), and a command that fails stops the setup.
`run` raises `SetupError` at the first step that fails; the caller (lanes/claims.py) undoes
the claim, so a lane is held with its worktree fully set up, or not held.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes import git
from lanes.errors import BadInput, OperationalError, os_error

if TYPE_CHECKING:
    from lanes.config import Config

WORKTREEINCLUDE = ".worktreeinclude"
LOG = "setup.log"
COMMAND_TIMEOUT = 3600.0  # seconds a setup command may run (docs/setup.md, "Decisions")
KILL_GRACE = 5.0  # seconds between TERM and KILL of a command's process group
DRAIN = 1.0  # seconds the output is still read after the command exits
LOG_HEAD = 256 << 10  # bytes of a command's output kept from its start ...
LOG_TAIL = 64 << 10  # ... and from its end; what lies between is counted, not kept
TAIL_SHOWN = 2000  # characters of the output's end in the error
SKIPS_KEPT = 50  # skipped paths named in the report (all are counted)
SKIPS_LOGGED = 500  # skipped paths named in setup.log
_INCLUDE_LIMIT = 1 << 20
_FICLONE = 0x40049409  # ioctl: share the source's blocks (btrfs, XFS, bcachefs, ...)
_FATAL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Plan:
    """What setup will do, read before the claim is published (bad input changes nothing)."""

    copy: list[str]  # gitignore patterns: [setup] copy anchored at the root, .worktreeinclude
    link: list[str]
    commands: list[str]


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass(frozen=True)
class SetupReport:
    """What setup did (the claim's JSON carries it as `setup`)."""

    copied: int = 0  # files and symlinks made in the worktree
    copied_bytes: int = 0
    reflinked: int = 0  # of the files, those cloned (their blocks shared until changed)
    linked: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # run, each exited 0
    log: str = ""
    skipped: list[Skip] = field(default_factory=list)  # the first SKIPS_KEPT
    skipped_count: int = 0


class SetupError(Exception):
    """A step of the setup failed; `facts` go into the claim's error as they are."""

    def __init__(self, step: str, what: str, output: str = "", **facts: Any) -> None:
        super().__init__(what)
        self.step = step  # copy, link or command
        self.what = what
        self.output = output
        self.facts = facts


def plan(cfg: Config) -> Plan:
    """The setup of this repository: `[setup]` and `.worktreeinclude`. A .worktreeinclude
    that cannot be read is bad input (exit 2), before anything is claimed."""
    setup = cfg.settings.setup
    patterns = ["/" + path for path in setup.copy_]
    patterns += read_worktreeinclude(cfg.main_checkout)
    return Plan(patterns, list(setup.link), list(setup.commands))


def read_worktreeinclude(main_checkout: Path) -> list[str]:
    """The patterns of `.worktreeinclude` at the main checkout's root: one gitignore
    pattern a line, blank lines and `#` comments skipped, spaces around a pattern dropped."""
    path = main_checkout / WORKTREEINCLUDE
    if not os.path.lexists(path):
        return []

    def bad(why: str) -> BadInput:
        return BadInput(
            "bad-config",
            f"{path} {why}",
            hint=f"make {WORKTREEINCLUDE} a UTF-8 text file with one gitignore pattern a "
            "line (like .env), or remove it",
        )

    try:
        if not path.is_file():
            raise bad("is not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror})") from None
    if len(data) > _INCLUDE_LIMIT:
        raise bad(f"is larger than {_INCLUDE_LIMIT >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("is not UTF-8") from None
    if "\0" in text:
        raise bad("holds a NUL byte")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def run(
    cfg: Config,
    todo: Plan,
    worktree: Path,
    claim_dir: Path,
    env: dict[str, str],
    beat: Callable[[], None],
) -> SetupReport:
    """Set the worktree up: copies, links, then commands; raises SetupError at the first
    step that fails (what was made is left: the caller removes the worktree). `beat` keeps
    the claim's heartbeat while a long command runs."""
    try:
        log = _Log(claim_dir / LOG)
    except OSError as exc:
        raise os_error(exc, "the setup log could not be made", path=claim_dir / LOG) from exc
    try:
        log.line(
            f"lanes setup of {env.get('LANES_WAVE')}/{env.get('LANES_LANE')} in {worktree}, "
            f"{datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        )
        skips: list[Skip] = []
        copier = _Copier(cfg.main_checkout, worktree)
        try:
            wanted = _candidates(cfg, todo, skips) if todo.copy else []
            queries = [*wanted, *(f + "/" for f in todo.link), *todo.link]
            ignored = git.ignored_in(worktree, queries) if queries else set()
            for rel in wanted:
                if rel in ignored:
                    copier.copy(rel, skips)
                else:
                    skips.append(
                        Skip(
                            rel,
                            "not git-ignored in the lane (tracked there, or no "
                            "rule of its .gitignore ignores it): not copied",
                        )
                    )
            linked = [f for f in todo.link if _link(cfg, copier, f, ignored, skips)]
        finally:
            copier.close()
        log.line(
            f"copied {copier.copied} file(s) and link(s), {copier.bytes} bytes "
            f"({copier.reflinked} cloned by reflink); linked {len(linked)} folder(s)"
        )
        for skip in skips[:SKIPS_LOGGED]:
            log.line(f"skipped {skip.path}: {skip.reason}")
        if len(skips) > SKIPS_LOGGED:
            log.line(f"... and {len(skips) - SKIPS_LOGGED} more skipped")
        beat_every = max(1.0, cfg.stale_after_seconds / 4)
        for number, command in enumerate(todo.commands, 1):
            _command(command, number, len(todo.commands), worktree, env, log, beat, beat_every)
        log.line("setup complete")
    finally:
        log.close()
    return SetupReport(
        copier.copied,
        copier.bytes,
        copier.reflinked,
        linked,
        list(todo.commands),
        str(log.path),
        skips[:SKIPS_KEPT],
        len(skips),
    )


def failure(exc: SetupError, wave: str, lane: str, log: Path | None) -> OperationalError:
    """The claim's error for a setup that failed (the claim is undone by then)."""
    where = f"; the whole output is kept in {log}" if log else ""
    tail = f"; the end of its output:\n{exc.output.rstrip()}" if exc.output.strip() else ""
    return OperationalError(
        "setup-failed",
        f"setup of {wave}/{lane} failed, so the lane is not claimed (its worktree and "
        f"branch are gone): {exc.what}{where}{tail}",
        hint="fix what failed (the [setup] section of the configuration, or what the command "
        "needs), then claim the lane again",
        step=exc.step,
        output=exc.output,
        log=str(log) if log else None,
        **exc.facts,
    )


def keep_log(cfg: Config, wave: str, lane: str, claim_dir: Path) -> Path | None:
    """Move a failed setup's log out of the claim directory (about to be undone) into the
    wave's archive, in one rename; None when there is none."""
    src = claim_dir / LOG
    if not src.is_file():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    dest_root = cfg.wave_dir(wave) / ".archive"
    dest = dest_root / f"{lane}-setup-failed-{stamp}-{uuid.uuid4().hex[:6]}.log"
    try:
        dest_root.mkdir(exist_ok=True)
        os.rename(src, dest)
    except OSError:
        return None
    return dest


# -- copy ----------------------------------------------------------------------------------


def _candidates(cfg: Config, todo: Plan, skips: list[Skip]) -> list[str]:
    """The untracked paths the patterns match, in walking order, the inbox left out and
    what is inside a `link` folder (the link brings it)."""
    inbox = cfg.settings.inbox.strip("/") + "/"
    linked = tuple(folder + "/" for folder in todo.link)
    found = []
    matched = git.untracked_matching(cfg.main_checkout, todo.copy)
    if matched:  # each pattern that brings nothing is named (a typo is never silent)
        for pattern in todo.copy:
            if not pattern.startswith("!") and not (
                len(todo.copy) == 1 or git.untracked_matching(cfg.main_checkout, [pattern])
            ):
                skips.append(Skip(pattern, _MATCHES_NOTHING))
    else:
        skips += [Skip(p, _MATCHES_NOTHING) for p in todo.copy if not p.startswith("!")]
    for rel in matched:
        under = rel.rstrip("/") + "/"
        if under.startswith(inbox):
            skips.append(Skip(rel, "in the lanes inbox: never copied"))
        elif under.startswith(linked):
            skips.append(Skip(rel, "inside a linked folder: the link brings it"))
        else:
            found.append(rel)
    return sorted(found, key=lambda rel: rel.rstrip("/").split("/"))


_MATCHES_NOTHING = (
    "matches no untracked file of the main checkout (no such file, or a tracked one): "
    "nothing copied for it"
)


class _Copier:
    """Copies paths of the main checkout into the worktree along open folders of both (the
    folders of the current path), so no step goes through a symlink on either side."""

    def __init__(self, main: Path, worktree: Path) -> None:
        self.main, self.worktree = main, worktree
        self.src: list[int] = []
        self.dst: list[int] = []
        try:
            self.src.append(os.open(main, _DIR))
            self.dst.append(os.open(worktree, _DIR))
        except OSError as exc:
            self.close()
            raise _copy_error(str(exc.filename), exc) from exc
        self.names: list[str] = []
        self.reflink = True
        self.ranges = hasattr(os, "copy_file_range")
        self.copied = self.bytes = self.reflinked = 0

    def close(self) -> None:
        for fd in (*self.src, *self.dst):
            os.close(fd)
        self.src, self.dst, self.names = [], [], []

    def copy(self, rel: str, skips: list[Skip]) -> None:
        """Copy the file, symlink or nested repository (`rel` ends with /) at `rel`."""
        parts = rel.rstrip("/").split("/")
        try:
            if not self.enter(parts[:-1]):
                skips.append(
                    Skip(
                        rel, "a folder on its path is a file or symlink in the worktree: not copied"
                    )
                )
                return
            self._entry(parts[-1], rel.rstrip("/"), skips)
        except OSError as exc:
            raise _copy_error(rel, exc) from exc

    def enter(self, parts: list[str]) -> bool:
        """Open the folders of `parts` on both sides, making them in the worktree as in the
        main checkout; False when one of them is not a folder there (never followed)."""
        common = 0
        while common < min(len(parts), len(self.names)) and parts[common] == self.names[common]:
            common += 1
        while len(self.names) > common:
            self.names.pop()
            os.close(self.src.pop())
            os.close(self.dst.pop())
        return all(self._push(name) for name in parts[common:])

    def _push(self, name: str) -> bool:
        try:
            src = os.open(name, _DIR, dir_fd=self.src[-1])
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                return False  # changed since git listed it
            raise
        try:
            mode = stat.S_IMODE(os.fstat(src).st_mode) | stat.S_IRWXU
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, mode, dir_fd=self.dst[-1])
            dst = os.open(name, _DIR, dir_fd=self.dst[-1])
        except OSError as exc:
            os.close(src)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return False  # a file or a symlink in the worktree where a folder would go
            raise
        self.names.append(name)
        self.src.append(src)
        self.dst.append(dst)
        return True

    def _entry(self, name: str, rel: str, skips: list[Skip]) -> None:
        st = os.stat(name, dir_fd=self.src[-1], follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            self._file(name, rel, skips)
        elif stat.S_ISLNK(st.st_mode):
            self._symlink(name, rel, skips)
        elif stat.S_ISDIR(st.st_mode):  # a nested repository, or a folder within it
            if not self._push(name):
                skips.append(Skip(rel, "a file or symlink in the worktree: not copied"))
                return
            try:
                for child in sorted(os.listdir(self.src[-1])):
                    self._entry(child, f"{rel}/{child}", skips)
            finally:
                self.names.pop()
                os.close(self.src.pop())
                os.close(self.dst.pop())
        else:
            skips.append(Skip(rel, "a socket, fifo or device: not copied"))

    def _file(self, name: str, rel: str, skips: list[Skip]) -> None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        src = os.open(name, flags, dir_fd=self.src[-1])
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                skips.append(Skip(rel, "changed while copied (no longer a file): not copied"))
                return
            try:
                dst = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=self.dst[-1],
                )
            except FileExistsError:
                skips.append(Skip(rel, "exists in the worktree: left as it is"))
                return
            try:
                self.reflinked += self._clone(src, dst)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self.copied += 1
        self.bytes += st.st_size

    def _clone(self, src: int, dst: int) -> int:
        """Share the blocks (1), else copy in the kernel, else by reading (0)."""
        if self.reflink:
            import fcntl

            try:
                fcntl.ioctl(dst, _FICLONE, src)
                return 1
            except OSError as exc:
                if exc.errno in _FATAL:
                    raise
                self.reflink = False  # not on this filesystem: not asked again
        if self.ranges:
            try:
                while os.copy_file_range(src, dst, 1 << 30):
                    pass
                return 0
            except OSError as exc:
                if exc.errno in _FATAL:
                    raise
                self.ranges = False  # the offsets are where it stopped: go on by reading
        while chunk := os.read(src, 1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
        return 0

    def _symlink(self, name: str, rel: str, skips: list[Skip]) -> None:
        """A symlink is made again, never followed: one into the main checkout points at the
        same path in the worktree (relative), one out of it at the very place it points at
        from the main checkout (absolute, so it never lands elsewhere from /tmp)."""
        target = os.readlink(name, dir_fd=self.src[-1])
        main, here = str(self.main), os.path.dirname(rel)
        where = os.path.normpath(os.path.join(main, here, target))
        if where == main or where.startswith(main + os.sep):
            new = os.path.relpath(
                os.path.join(str(self.worktree), os.path.relpath(where, main)),
                os.path.join(str(self.worktree), here),
            )
        else:
            new = where
        try:
            os.symlink(new, name, dir_fd=self.dst[-1])
        except FileExistsError:
            skips.append(Skip(rel, "exists in the worktree: left as it is"))
            return
        self.copied += 1


def _copy_error(rel: str, exc: OSError) -> SetupError:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    full = " (free space on the worktree's filesystem)" if exc.errno in _FATAL else ""
    return SetupError(
        "copy",
        f"copying {rel} from the main checkout into the worktree failed: "
        f"{exc.strerror or exc}{full}",
        file=rel,
        errno=name,
    )


# -- link ----------------------------------------------------------------------------------


def _link(cfg: Config, copier: _Copier, folder: str, ignored: set[str], skips: list[Skip]) -> bool:
    """Make `folder` an absolute symlink to the main checkout's; False when skipped."""
    src = cfg.main_checkout / folder
    try:
        st = os.lstat(src)
    except FileNotFoundError:
        skips.append(Skip(folder, "not in the main checkout (nothing to link yet): not linked"))
        return False
    except OSError as exc:
        raise SetupError("link", f"{src} cannot be read: {exc.strerror}", folder=folder) from exc
    if not stat.S_ISDIR(st.st_mode):
        skips.append(
            Skip(folder, "not a folder in the main checkout (a file or a symlink): not linked")
        )
        return False
    if folder + "/" not in ignored:
        skips.append(
            Skip(folder, "not git-ignored in the lane (the link would be committed): not linked")
        )
        return False
    if folder not in ignored:
        # `node_modules/` ignores a folder, not a symlink of that name: without this, the
        # link would show in `git status` and `git add -A` would commit it.
        _exclude(cfg, "/" + folder)
    parts = folder.split("/")
    try:
        if not copier.enter(parts[:-1]):
            skips.append(
                Skip(
                    folder, "a folder on its path is a file or symlink in the worktree: not linked"
                )
            )
            return False
        os.symlink(str(src), parts[-1], dir_fd=copier.dst[-1])
    except FileExistsError:
        skips.append(Skip(folder, "exists in the worktree: left as it is"))
        return False
    except OSError as exc:
        raise SetupError(
            "link", f"linking {folder} into the worktree failed: {exc.strerror}", folder=folder
        ) from exc
    return True


def _exclude(cfg: Config, pattern: str) -> None:
    """Add `pattern` to the repository's info/exclude (never a tracked file), once."""
    exclude = cfg.common_dir / "info" / "exclude"
    try:
        existing = exclude.read_text(encoding="utf-8")
    except FileNotFoundError:
        existing = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError("link", f"{exclude} cannot be read: {exc}") from exc
    if pattern in existing.splitlines():
        return
    try:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with open(exclude, "a", encoding="utf-8") as fh:
            fh.write(("" if not existing or existing.endswith("\n") else "\n") + pattern + "\n")
    except OSError as exc:
        raise SetupError("link", f"{exclude} cannot be written: {exc.strerror}") from exc


# -- commands ------------------------------------------------------------------------------


class _Log:
    """setup.log in the claim directory: the steps, and each command's output, bounded
    (its first LOG_HEAD and last LOG_TAIL bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(path, flags, 0o644)
        self.last = b"\n"
        self._reset()

    def _reset(self) -> None:
        self.written = 0
        self.tail = bytearray()
        self.dropped = 0
        self.recent = bytearray()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        if data:
            self.last = data[-1:]

    def line(self, text: str) -> None:
        self._write((text + "\n").encode("utf-8", "replace"))

    def output(self, data: bytes) -> None:
        self.recent = (self.recent + data)[-4 * TAIL_SHOWN :]
        room = max(0, LOG_HEAD - self.written)
        if room:
            self._write(data[:room])
            self.written += min(room, len(data))
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > LOG_TAIL:
                self.dropped += len(self.tail) - LOG_TAIL
                del self.tail[: len(self.tail) - LOG_TAIL]

    def end_output(self) -> str:
        """Write what was kept of the end; the end of the output, for the error."""
        if self.dropped:
            self.line(f"\n[... {self.dropped} bytes of output not kept ...]")
        if self.tail:
            self._write(bytes(self.tail))
        if self.last != b"\n":
            self._write(b"\n")
        text = self.recent.decode("utf-8", "replace")[-TAIL_SHOWN:]
        self._reset()
        return text

    def close(self) -> None:
        os.close(self.fd)


def _command(
    command: str,
    number: int,
    total: int,
    worktree: Path,
    env: dict[str, str],
    log: _Log,
    beat: Callable[[], None],
    beat_every: float,
) -> None:
    log.line(f"$ {command}")
    started = time.monotonic()
    code, timed_out = _run_command(command, worktree, env, log, beat, beat_every)
    seconds = time.monotonic() - started
    output = log.end_output()
    if timed_out:
        log.line(f"timed out after {seconds:.0f}s: its process group was stopped")
    else:
        log.line(f"exit {code} after {seconds:.1f}s")
    if code == 0 and not timed_out:
        return
    how = (
        f"timed out after {COMMAND_TIMEOUT:.0f}s and was stopped"
        if timed_out
        else f"exited with {code}"
        if code >= 0
        else f"was killed by signal {-code}"
    )
    raise SetupError(
        "command",
        f"setup command {number} of {total}, {command!r}, {how}",
        output,
        command=command,
        exit_code=code,
        timed_out=timed_out,
    )


def _run_command(
    command: str,
    worktree: Path,
    env: dict[str, str],
    log: _Log,
    beat: Callable[[], None],
    beat_every: float,
) -> tuple[int, bool]:
    """Run one command in its own process group; its exit code, and whether it timed out.
    Interrupted (Ctrl-C), its group is killed before the interrupt goes on."""
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=worktree,
            env=git.clean_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise SetupError("command", f"cannot run /bin/sh: {exc.strerror}", command=command) from exc
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    now = time.monotonic()
    deadline, next_beat = now + COMMAND_TIMEOUT, now + beat_every
    exited: float | None = None
    try:
        open_ = True
        while True:
            now = time.monotonic()
            if now >= next_beat:
                beat()
                next_beat = now + beat_every
            if now >= deadline:
                _stop(proc)
                return proc.wait(), True
            if exited is None and proc.poll() is not None:
                exited = now
            if exited is not None and (not open_ or now - exited > DRAIN):
                break  # done; a background process that kept the output open is not waited on
            if not open_:
                time.sleep(0.05)
                continue
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                data = os.read(fd, 1 << 16)
                if data:
                    log.output(data)
                else:
                    open_ = False
    except BaseException:
        _kill(proc)
        raise
    finally:
        proc.stdout.close()
    return proc.wait(), False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM to the command's process group, then KILL after KILL_GRACE."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except OSError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)
    _kill(proc)
