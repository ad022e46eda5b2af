"""The ledger: an append-only Markdown table, one row per event, hash-chained.

Appends take a lock (flock through filelock) around "read the tail hash, write one row",
because a chain read and written without one forks under concurrency. Each row is one
`os.write` on an O_APPEND descriptor, so concurrent appenders never tear a row. The latest
(count, hash) is also kept as an anchor inside the git dir, so a tail cut off or rewritten
in an editor is noticed too (docs/ledger.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lanes.errors import OperationalError

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
        "integrated",
        "bounced",
        "integrate-done",
        "verify",
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
        from filelock import FileLock

        if event not in EVENTS:
            raise ValueError(f"unknown ledger event {event!r}")
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_path)):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                prev_seq, prev_hash = self._tail(fd)
                if prev_seq == 0 and os.fstat(fd).st_size == 0:
                    _write_all(fd, _header(self.wave).encode())
                seq = prev_seq + 1
                when = _now()
                body = _body(seq, when, event, self.wave, lane, agent, _details_cell(details))
                chain = _link(prev_hash, body)
                _write_all(fd, f"{body} {chain} |\n".encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._write_anchor(seq, chain)
        return Event(seq, when, event, self.wave, lane, agent, details, chain)

    def _tail(self, fd: int) -> tuple[int, str]:
        """(seq, hash) of the last complete row; drops a torn, never-acknowledged tail."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, genesis(self.wave)
        with open(self.path, "rb") as fh:
            chunk = 4096
            while True:
                start = max(0, size - chunk)
                fh.seek(start)
                data = fh.read(size - start)
                if start == 0 or data.count(b"\n") >= 2:
                    break
                chunk *= 4
        if not data.endswith(b"\n"):
            # A writer died mid-row (its caller never heard "done"): cut the torn part.
            cut = data.rfind(b"\n") + 1
            os.truncate(self.path, start + cut)
            data = data[:cut]
        # Split at "\n" only: splitlines() also breaks at U+2028, U+0085..., which JSON
        # leaves raw in the details, and would miss the last row (and reuse its number).
        for raw in reversed(data.decode("utf-8", "replace").split("\n")):
            parsed = _parse_row(raw.removesuffix("\r"))
            if parsed is not None:
                return parsed[0], parsed[-1]
        return 0, genesis(self.wave)

    def _write_anchor(self, seq: int, chain: str) -> None:
        tmp = self.anchor_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(f"{seq} {chain}\n", encoding="utf-8")
        os.replace(tmp, self.anchor_path)

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

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_path)):
            return self._verify()

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
        if anchor is not None:
            a_seq, a_hash = anchor
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
        elif count:
            return VerifyReport(
                False, count, 0, "the anchor is missing: the ledger cannot be proved whole"
            )
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


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written != len(data):
        raise OperationalError(
            "ledger-short-write",
            f"wrote {written} of {len(data)} bytes to the ledger (disk full?)",
            hint="free space, then run lanes ledger verify",
        )
