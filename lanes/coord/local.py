"""Coordination on one machine: the inbox in the main checkout, locks in the git dir.

A claim is the rename of a prepared directory holding the claim record onto
`<inbox>/<wave>/<lane>/` (a rename onto a non-empty directory fails: one winner); release
and reap move it, in one rename, into `<inbox>/<wave>/.archive/`; a heartbeat is the
heartbeat file's mtime; the ledger an O_APPEND file with a lock and an anchor
(lanes/ledger.py); the integrator's lease a filelock; landing an `update-ref`
compare-and-swap of main, then the record.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes.coord import Holder, Landed, PendingEvent
from lanes.failpoint import failpoint

if TYPE_CHECKING:
    from lanes.config import Config
    from lanes.ledger import Ledger

ARCHIVE = ".archive"
RETIRING = "retiring"  # in a claim dir: the name in the archive a retirement promised it
LOCK = "integrate.lock"  # the integrator's: one pass per repository at a time
OWNER = "integrate.owner"


def publish(tmp: Path, target: Path) -> bool:
    """Rename the prepared claim directory onto the lane's name; False if someone has it."""
    try:
        os.rename(tmp, target)
        return True
    except OSError as exc:
        if exc.errno in (39, 17, 66):  # ENOTEMPTY, EEXIST (Linux), ENOTEMPTY (BSD)
            return False
        raise


def discard(path: Path) -> None:
    """Remove a directory by first renaming it away, so its name is never seen half-empty."""
    import shutil

    if not path.exists():
        return
    trash = path.parent / f".trash-{uuid.uuid4().hex}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def archive_path(cfg: Config, wave: str, lane: str, why: str) -> Path:
    """A new name in the wave's archive for the lane's claim directory."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return cfg.wave_dir(wave) / ARCHIVE / f"{lane}-{why}-{stamp}-{uuid.uuid4().hex[:6]}"


def promise(cfg: Config, wave: str, lane: str, dest: Path) -> None:
    """Write into the claim directory where it is going (remote: before the push whose
    ledger row names that place), so that a retirement killed after its push and before
    its rename is archived there by the next command (`archive`)."""
    tmp = cfg.claim_dir(wave, lane) / f".{RETIRING}.{uuid.uuid4().hex}"
    tmp.write_text(dest.name + "\n", encoding="utf-8")
    os.replace(tmp, tmp.with_name(RETIRING))


def archive(cfg: Config, wave: str, lane: str, why: str) -> Path:
    """Move a claim directory into the wave's archive in one rename: the lane is free. A
    claim directory promised a place (`promise`) goes there, so the ledger row that names
    it holds."""
    src = cfg.claim_dir(wave, lane)
    dest = _promised(src, lane) or archive_path(cfg, wave, lane, why)
    dest.parent.mkdir(exist_ok=True)
    os.rename(src, dest)
    return dest


def _promised(src: Path, lane: str) -> Path | None:
    try:
        name = (src / RETIRING).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    dest = src.parent / ARCHIVE / name
    ok = name.startswith(f"{lane}-") and "/" not in name and name.isprintable()
    return dest if ok and not os.path.lexists(dest) else None


def touch_heartbeat(path: Path, wave: str, lane: str) -> None:
    """The heartbeat file's mtime becomes now. That needs no space on disk, so it works on
    a full one. A heartbeat file removed, or replaced by a symlink, is made again as lanes'
    own regular file (a symlink is never followed)."""
    import contextlib
    import stat

    from lanes.errors import OperationalError, os_error

    try:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            raise OperationalError(
                "io-failed",
                f"the heartbeat {path} of {wave}/{lane} is a directory, not lanes' file",
                hint=f"remove it (rm -r {path}), then run lanes heartbeat again",
                path=str(path),
            )
        if mode is not None and not stat.S_ISREG(mode):
            os.unlink(path)  # a symlink or another node planted there: never followed
            mode = None
        if mode is None:
            with contextlib.suppress(FileExistsError):  # a heartbeat at the same instant
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.utime(path, follow_symlinks=False)
    except OSError as exc:
        raise os_error(exc, f"the heartbeat of {wave}/{lane} was not recorded", path=path) from exc


class LocalCoord:
    kind = "local"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.where = f"the inbox {cfg.inbox}"

    # -- claims ------------------------------------------------------------------------
    def publish_claim(
        self, wave: str, lane: str, record: dict[str, Any], prepared: Path
    ) -> tuple[bool, Holder]:
        target = self.cfg.claim_dir(wave, lane)
        if publish(prepared, target):
            return True, Holder(str(record["agent"]), record)
        return False, self.holder(wave, lane) or Holder("unknown", None)

    def undo_claim(self, wave: str, lane: str, ours: Holder) -> None:
        discard(self.cfg.claim_dir(wave, lane))

    def holder(self, wave: str, lane: str) -> Holder | None:
        from lanes import claims

        record = claims.read_record(self.cfg.claim_dir(wave, lane))
        return Holder(record.agent, record.to_json()) if record else None

    def holders(self, wave: str) -> dict[str, Holder]:
        from lanes import claims, state

        found = {}
        for lane, claim_dir in state.lane_dirs(self.cfg, wave):
            record = claims.read_record(claim_dir)
            found[lane] = Holder(
                record.agent if record else "", record.to_json() if record else None
            )
        return found

    def heartbeat(self, wave: str, lane: str, expect: Holder) -> Holder:
        from lanes import claims

        touch_heartbeat(self.cfg.claim_dir(wave, lane) / claims.HEARTBEAT, wave, lane)
        return expect

    def retire(
        self,
        wave: str,
        lane: str,
        expect: Holder,
        why: str,
        record: Callable[[Path], PendingEvent] | None = None,
    ) -> Path:
        dest = archive(self.cfg, wave, lane, why)
        if record is not None:  # the rename freed the lane; its row follows
            e = record(dest)
            self.ledger(wave).append(e.event, e.lane, e.agent, **e.details)
        return dest

    def submit(
        self, wave: str, lane: str, expect: Holder, branch: str, fragments: dict[str, bytes]
    ) -> Holder:
        return expect  # the branch is in this repository, the fragments in the claim dir

    def waves(self) -> list[str]:
        from lanes import state

        return state.local_waves(self.cfg)

    # -- the ledger --------------------------------------------------------------------
    def ledger(self, wave: str) -> Ledger:
        from lanes.ledger import Ledger

        return Ledger(self.cfg.ledger_path(wave), wave, self.cfg.state_dir)

    # -- the integrator ----------------------------------------------------------------
    def fetch_main(self) -> str | None:
        return None  # main here is the truth

    def stage_wave(self, wave: str) -> None:
        return None  # the branches are in this repository, the fragments in the claim dirs

    def submitted_heads(self, wave: str) -> dict[str, str] | None:
        return None  # the ledger here is the record of submissions (its chain, its anchor)

    def fragment_dir(self, wave: str, lane: str) -> Path:
        from lanes import claims

        return self.cfg.claim_dir(wave, lane) / claims.FRAGMENTS

    def integrator_lease(self, wave: str, owner: str) -> AbstractContextManager[None]:
        return _pass_lock(self.cfg, wave, owner)

    def land(
        self,
        wave: str,
        new: str,
        old: str,
        events: Sequence[PendingEvent],
        lanes: Sequence[str] = (),
    ) -> Landed:
        from lanes import git

        repo = self.cfg.main_checkout
        moved = git.update_ref(
            repo, f"refs/heads/{self.cfg.main}", new, old, f"lanes integrate {wave}"
        )
        if moved.returncode != 0:
            now = git.rev_parse(repo, self.cfg.main) or ""
            return Landed(False, now, (moved.stderr or moved.stdout).strip())
        # A kill from here on leaves main moved without its rows: the next pass reads the
        # lanes' trailers on main and writes them (integrator/integrate.py, _reconcile).
        failpoint("cas")
        log, made = self.ledger(wave), []
        for e in events:
            made.append(log.append(e.event, e.lane, e.agent, **e.details))
            failpoint("ledger")
        return Landed(True, new, "", made)


@contextmanager
def _pass_lock(cfg: Config, wave: str, owner: str) -> Iterator[None]:
    """One pass per repository at a time (main is shared by every wave): a filelock,
    released by the kernel the instant its holder dies."""
    from filelock import FileLock, Timeout

    from lanes.errors import Contention

    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(cfg.state_dir / LOCK))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            held_by = (cfg.state_dir / OWNER).read_text(encoding="utf-8").strip()
        except OSError:
            held_by = "unknown"
        raise Contention(
            "integrator-running",
            f"another integration pass is running ({held_by})",
            hint="wait for it to finish (lanes ledger WAVE --follow shows it), then run again",
            owner=held_by,
        ) from None
    try:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        (cfg.state_dir / OWNER).write_text(
            f"{owner or 'pid ' + str(os.getpid())}, wave {wave}, since {stamp}\n",
            encoding="utf-8",
        )
        yield
    finally:
        lock.release()
