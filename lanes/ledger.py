"""The ledger: an append-only Markdown table, one row per event, hash-chained.

Appends take a lock (flock through filelock) around "read the tail hash, write one row",
because a chain read and written without one forks under concurrency. Each row is one
`os.write` on an O_APPEND descriptor, so concurrent appenders never tear a row. The latest
(count, hash) is also kept as an anchor inside the git dir, so a tail cut off or rewritten
in an editor is noticed too (docs/ledger.md).

The row is the commit point of an append. Anything that fails before it is written leaves
the file as it was (a row written in part is cut off again) and raises `disk-full` or
`io-failed`; anything that fails after it (the fsync, the anchor) is returned as a warning
on the event, never raised: the event happened. An anchor left one row behind that way (or
by a kill between the row and the anchor) is brought forward, under the lock, by the next
append or verify, once the row is proved to chain from it; an anchor that disagrees with the
file in any other way is never moved, so no append hides what verify would find (D33).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEDGER_NAME = "AGENT_LEDGER.md"
COLUMNS = ("#", "time (UTC)", "event", "wave", "lane", "agent", "details", "chain")
EVENTS = frozenset(
    {
        "claim",
        "claim-refused",
        "fragment",
        "submit",
        "submit-refused",
        "release",
        "reap",
        "integrate-start",
        "tested",
        "integrated",
        "bounced",
        "integrate-done",
        "verify",
        "agent-start",  # the wave runner (lanes run): an agent's command started
        "agent-exit",  # ... and ended: its code, or the timeout
    }
)


@dataclass(frozen=True)
class Event:
    seq: int
    time: str
    event: str
    wave: str
    lane: str
    agent: str
    details: dict[str, Any] = field(default_factory=dict)
    chain: str = ""
    line_no: int = 0  # 1-based line in the file, for people
    body: str = field(default="", repr=False)  # the row as written, without its chain cell
    # What went wrong after the row was written (it is recorded all the same): set by append.
    warnings: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "event": self.event,
            "wave": self.wave,
            "lane": self.lane,
            "agent": self.agent,
            "details": self.details,
            "chain": self.chain,
        }


def genesis(wave: str) -> str:
    return hashlib.sha256(f"lanes-ledger {wave}".encode()).hexdigest()[:16]


def _link(prev: str, body: str) -> str:
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()[:16]


def _details_cell(details: dict[str, Any]) -> str:
    # JSON keeps the details on one row; a pipe would split the cell, so it is escaped too.
    text = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("|", "\\u007c")


def _body(seq: int, when: str, event: str, wave: str, lane: str, agent: str, details: str) -> str:
    # Lane and agent are checked names (no pipes, no spaces); "-" stands for none.
    cells = (str(seq), when, event, wave, lane or "-", agent or "-", details)
    return "| " + " | ".join(cells) + " |"


def _header(wave: str) -> str:
    return (
        f"# AGENT_LEDGER: wave {wave}\n\n"
        "Append-only, written by `lanes`. The last cell of each row chains it to the row "
        "before; `lanes ledger verify` checks the chain.\n\n"
        "| " + " | ".join(COLUMNS) + " |\n"
        "|" + "|".join("---" for _ in COLUMNS) + "|\n"
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Ledger:
    """One wave's ledger file, its append lock and its anchor."""

    def __init__(self, path: Path, wave: str, state_dir: Path) -> None:
        self.path = path
        self.wave = wave
        self.anchor_path = state_dir / "ledger" / f"{wave}.head"
        self.lock_path = state_dir / "ledger" / f"{wave}.lock"

    # -- writing ---------------------------------------------------------------------------

    def append(self, event: str, lane: str = "", agent: str = "", **details: Any) -> Event:
        """Write one row. Raises `disk-full`/`io-failed` (with `recorded: false`) when the
        row could not be written, and then the file is as it was; once the row is written
        nothing raises: what failed after it is in the event's `warnings`."""
        from filelock import FileLock

        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}")
        done: list[Event] = []
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.lock_path)):
                done.append(self._append_locked(event, lane, agent, details))
        except OSError as exc:
            if done:  # releasing the lock failed: the row is in all the same
                return done[0]
            from lanes.errors import os_error

            raise os_error(
                exc,
                f"the {event} event was not recorded in the ledger {self.path}",
                path=self.path,
                recorded=False,
            ) from exc
        return done[0]

    def _append_locked(self, event: str, lane: str, agent: str, details: dict[str, Any]) -> Event:
        warnings: list[str] = []
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        written = False
        try:
            tail = self._tail(fd)
            anchored = self._settle_anchor(tail)  # raises before the row if it cannot
            header = b""
            start = os.fstat(fd).st_size
            if tail.seq == 0 and self._header_missing(start):
                if start:
                    os.ftruncate(fd, 0)  # a header torn by a failed first append
                    start = 0
                header = _header(self.wave).encode()
            seq = tail.seq + 1
            when = _now()
            body = _body(seq, when, event, self.wave, lane, agent, _details_cell(details))
            chain = _link(tail.chain, body)
            _write_row(fd, start, header + f"{body} {chain} |\n".encode())
            written = True  # the commit point: from here on, nothing raises
            try:
                os.fsync(fd)
            except OSError as exc:
                warnings.append(
                    f"the {event} row is written, but it could not be synced to disk "
                    f"({exc.strerror}): a crash of the machine now could lose it"
                )
        except BaseException:
            if not written:  # a ledger this append created, and left empty, goes again
                with contextlib.suppress(OSError):
                    if os.fstat(fd).st_size == 0:
                        os.unlink(self.path)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        if anchored:
            try:
                self._write_anchor(seq, chain)
            except OSError as exc:
                warnings.append(
                    f"the {event} event is recorded, but the ledger's anchor "
                    f"{self.anchor_path} could not be updated ({exc.strerror}); the next "
                    "append, or lanes ledger verify, brings it forward once there is room"
                )
        else:
            warnings.append(
                f"the {event} event is recorded, but the ledger {self.path} does not match "
                "its anchor (edited, cut or rewritten?): the anchor is left as it was, so "
                "that lanes ledger verify names the damage"
            )
        return Event(
            seq, when, event, self.wave, lane, agent, details, chain, 0, body, tuple(warnings)
        )

    def _header_missing(self, size: int) -> bool:
        """With no row in the file: whether it lacks its header (empty, or a header cut
        short by a failed first append; anything else is left as it is)."""
        if size == 0:
            return True
        header = _header(self.wave).encode()
        if size >= len(header):
            return False
        with open(self.path, "rb") as fh:
            return header.startswith(fh.read(size))

    def _tail(self, fd: int) -> _Tail:
        """The last two complete rows; cuts a torn, never-acknowledged tail first."""
        size = os.fstat(fd).st_size
        if size == 0:
            return _Tail(0, genesis(self.wave), None, None)
        with open(self.path, "rb") as fh:
            chunk = 4096
            while True:
                start = max(0, size - chunk)
                fh.seek(start)
                data = fh.read(size - start)
                if start == 0 or data.count(b"\n") >= 3:
                    break
                chunk *= 4
        if not data.endswith(b"\n"):
            # A writer died mid-row (its caller never heard "done"): cut the torn part.
            cut = data.rfind(b"\n") + 1
            os.truncate(self.path, start + cut)
            data = data[:cut]
        # Split at "\n" only: splitlines() also breaks at U+2028, U+0085..., which JSON
        # leaves raw in the details, and would miss the last row (and reuse its number).
        lines = [raw.removesuffix("\r") for raw in data.decode("utf-8", "replace").split("\n")]
        for i in range(len(lines) - 1, -1, -1):
            parsed = _parse_row(lines[i])
            if parsed is not None:
                last = _event_from_row(lines[i], 0)
                before = next(
                    (
                        _event_from_row(raw, 0)
                        for raw in reversed(lines[:i])
                        if _parse_row(raw) is not None
                    ),
                    None,
                )
                return _Tail(parsed[0], parsed[-1], last, before)
        return _Tail(0, genesis(self.wave), None, None)

    def _settle_anchor(self, tail: _Tail) -> bool:
        """Whether the anchor agrees with the file's last row, once an anchor that an append
        left exactly one row behind (killed, or failed, between its row and the anchor) has
        been brought forward. That row is lanes' own: it chains from the anchored one.
        Raises OSError when the anchor cannot be written: then nothing else is, either."""
        anchored = self.anchor() or (0, genesis(self.wave))
        if anchored == (tail.seq, tail.chain):
            return True
        if _one_row_past(anchored, tail, self.wave):
            self._sweep_anchor_temps()
            self._write_anchor(tail.seq, tail.chain)
            return True
        return False

    def _write_anchor(self, seq: int, chain: str) -> None:
        """Replace the anchor: a synced temporary file renamed over it, removed on failure."""
        tmp = self.anchor_path.with_name(f"{self.anchor_path.name}.tmp{os.getpid()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_row(fd, 0, f"{seq} {chain}\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.anchor_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _sweep_anchor_temps(self) -> None:
        """Temporary anchors of appends killed before their rename (under the lock: no live
        append is writing one)."""
        for leftover in self.anchor_path.parent.glob(f"{self.anchor_path.name}.tmp*"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def anchor(self) -> tuple[int, str] | None:
        try:
            seq, chain = self.anchor_path.read_text(encoding="utf-8").split()
            return int(seq), chain
        except (OSError, ValueError):
            return None

    # -- reading ---------------------------------------------------------------------------

    def events(self) -> list[Event]:
        return [ev for ev in self._iter_rows() if isinstance(ev, Event)]

    def _iter_rows(self) -> Iterator[Event | tuple[int, str]]:
        """Events, and (line_no, raw) for every line of the table that is not a row."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        # The piece after the last newline is a row being written (or torn): it may end
        # inside a multi-byte character, so it is dropped before decoding.
        text = data[: data.rfind(b"\n") + 1].decode("utf-8", "replace")
        complete = [raw.removesuffix("\r") for raw in text.split("\n")[:-1]]
        table = False  # past the |---| line every line must be a row: nothing slips in
        for no, raw in enumerate(complete, start=1):
            if not table:
                if raw.startswith("|---"):
                    table = True
                    continue
                if not raw.startswith("| ") or raw.startswith("| #"):
                    continue  # the title, the note, the column names
                table = True  # the |---| line was edited away: the rows start here
            ev = _event_from_row(raw, no)
            yield ev if ev is not None else (no, raw)

    def verify(self) -> VerifyReport:
        """Check the chain and the anchor, read together under the append lock.

        Read apart, an append landing between the rows and the anchor looks like a cut tail.
        """
        from filelock import FileLock

        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.lock_path))
            lock.acquire()
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise
            # A read-only filesystem: no append can run either, so nothing can land
            # between the rows and the anchor. Read them without the lock.
            return self._verify()
        try:
            return self._verify()
        finally:
            lock.release()

    def _verify(self) -> VerifyReport:
        prev = genesis(self.wave)
        expected_seq = 1
        last_good_line = 0
        count = 0
        for row in self._iter_rows():
            if isinstance(row, tuple):
                return VerifyReport(False, count, row[0], "the row is not a well-formed ledger row")
            ev = row
            if ev.seq != expected_seq or _link(prev, ev.body) != ev.chain:
                what = (
                    f"expected event #{expected_seq}, found #{ev.seq}"
                    if ev.seq != expected_seq
                    else "its hash does not match its content and the row before"
                )
                return VerifyReport(
                    False,
                    count,
                    ev.line_no,
                    f"{what}: a row was edited, removed, inserted or moved at or before this line",
                )
            prev, expected_seq, last_good_line, count = ev.chain, ev.seq + 1, ev.line_no, ev.seq
        anchor = self.anchor()
        if anchor is None and count > 1:
            return VerifyReport(
                False, count, 0, "the anchor is missing: the ledger cannot be proved whole"
            )
        # No anchor and one row: the first append was stopped between its row and its
        # anchor (one row past the anchor is what such an append leaves, below).
        a_seq, a_hash = anchor or (0, genesis(self.wave))
        if count < a_seq:
            return VerifyReport(
                False,
                count,
                last_good_line + 1,
                f"the tail was cut off: the anchor records {a_seq} events, "
                f"the file ends after {count}",
            )
        rows = {ev.seq: ev for ev in self.events()}
        if a_seq and rows[a_seq].chain != a_hash:
            return VerifyReport(
                False,
                count,
                rows[a_seq].line_no,
                "event differs from the anchored one: the tail was rewritten",
            )
        if count > a_seq + 1:
            return VerifyReport(
                False,
                count,
                rows[a_seq + 2].line_no,
                "rows were appended without lanes (they are past the anchor)",
            )
        if count == a_seq + 1:
            # The last row chains from the anchored one (the chain was checked whole): it
            # is lanes' own, its append stopped before the anchor. Bring the anchor level,
            # if it can be written now; if not, the file is whole all the same.
            with contextlib.suppress(OSError):
                self._sweep_anchor_temps()
                self._write_anchor(count, rows[count].chain)
        return VerifyReport(True, count, 0, "")

    def follow(self, poll: float = 0.2) -> Iterator[Event]:
        """Every event, then each new one as it is appended (until interrupted)."""
        seen = 0
        while True:
            for ev in self.events():
                if ev.seq > seen:
                    seen = ev.seq
                    yield ev
            time.sleep(poll)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events: int
    bad_line: int  # 1-based line in the file; 0 when ok or not tied to a line
    reason: str


def _split_row(raw: str) -> list[str] | None:
    if not (raw.startswith("| ") and raw.endswith(" |")):
        return None
    cells = raw[2:-2].split(" | ")
    return cells if len(cells) == len(COLUMNS) else None


def _parse_row(raw: str) -> tuple[int, str] | None:
    cells = _split_row(raw)
    if cells is None or not cells[0].isdigit():
        return None
    return int(cells[0]), cells[-1]


def _event_from_row(raw: str, line_no: int) -> Event | None:
    cells = _split_row(raw)
    if cells is None or not cells[0].isdigit():
        return None
    seq, when, event, wave, lane, agent, details_raw, chain = cells
    try:
        details = json.loads(details_raw)
    except ValueError:
        return None
    if not isinstance(details, dict):
        return None
    body = raw[: len(raw) - len(chain) - 3]  # the row ends with " {chain} |"
    return Event(
        int(seq), when, event, wave, _none(lane), _none(agent), details, chain, line_no, body
    )


def _none(cell: str) -> str:
    return "" if cell == "-" else cell


@dataclass(frozen=True)
class _Tail:
    """The end of the ledger file, as an append finds it under the lock."""

    seq: int  # the last row's number (0: no row yet)
    chain: str  # its chain cell (the genesis when there is no row)
    last: Event | None  # the last row, when it parses whole
    before: Event | None  # the row before it, likewise


def _one_row_past(anchored: tuple[int, str], tail: _Tail, wave: str) -> bool:
    """Whether the file holds exactly one row past the anchor, and that row chains from the
    anchored one: what an append killed (or failed) between its row and its anchor leaves."""
    a_seq, a_hash = anchored
    last = tail.last
    if last is None or last.seq != a_seq + 1 or _link(a_hash, last.body) != last.chain:
        return False
    if a_seq == 0:
        return a_hash == genesis(wave)
    return tail.before is not None and (tail.before.seq, tail.before.chain) == anchored


def _write_row(fd: int, start: int, data: bytes) -> None:
    """Write `data` whole at the end of the file: one write, unless the disk fills midway.
    On failure the file is cut back to `start` (its size before), so no torn row is left,
    and the error is raised (ENOSPC for a write that makes no progress)."""
    view = memoryview(data)
    done = 0
    try:
        while done < len(data):
            written = os.write(fd, view[done:])
            if written == 0:
                raise OSError(errno.ENOSPC, "a write to the file made no progress")
            done += written
    except BaseException:
        if done:
            with contextlib.suppress(OSError):  # else the next append cuts it
                os.ftruncate(fd, start)
        raise
