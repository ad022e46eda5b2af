"""The hash-chained ledger: round trip, tamper detection, concurrency, torn rows, the CLI.

Real files and real processes throughout. Line numbers are 1-based lines of the file: the
header takes six lines, so event #k sits on line 6 + k of an untouched ledger.
"""

from __future__ import annotations

import hashlib
import json
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lanes import claims
from lanes.config import Config
from lanes.ledger import LEDGER_NAME, Ledger
from tests.conftest import LANES, run_lanes

HEADER_LINES = 6  # title, blank, note, blank, column names, |---|


def new_ledger(root: Path, wave: str = "44") -> Ledger:
    return Ledger(root / "inbox" / wave / LEDGER_NAME, wave, root / "state")


def fill(log: Ledger, n: int) -> None:
    for i in range(1, n + 1):
        log.append("claim" if i % 2 else "submit", f"lane-{i}", f"agent-{i % 3}", n=i, note="ok")


def rows_of(log: Ledger) -> list[str]:
    """The file's lines without their newlines (the file ends with one)."""
    data = log.path.read_bytes().decode("utf-8")
    assert data.endswith("\n")
    return data.split("\n")[:-1]


def write_rows(log: Ledger, lines: list[str]) -> None:
    log.path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))


def line_of(seq: int) -> int:
    return HEADER_LINES + seq


def index_of(seq: int) -> int:
    """Index in rows_of() of event #seq in an untouched ledger."""
    return line_of(seq) - 1


def forge_link(prev: str, body: str) -> str:
    """The chain as docs/ledger.md states it, computed here independently of lanes."""
    return hashlib.sha256(f"{prev}\n{body}".encode()).hexdigest()[:16]


def forge_genesis(wave: str) -> str:
    return hashlib.sha256(f"lanes-ledger {wave}".encode()).hexdigest()[:16]


def body_and_chain(row: str) -> tuple[str, str]:
    body, chain, _ = row.rsplit(" ", 2)
    return body, chain


def rechain(lines: list[str], wave: str = "44") -> list[str]:
    """What a forger who knows the algorithm does: recompute every row's chain cell."""
    prev = forge_genesis(wave)
    out = lines[:HEADER_LINES]
    for row in lines[HEADER_LINES:]:
        body, _ = body_and_chain(row)
        prev = forge_link(prev, body)
        out.append(f"{body} {prev} |")
    return out


# -- round trip ----------------------------------------------------------------------------

AWKWARD = {
    "pipe": "a | b || c |",
    "newlines": "line one\nline two\r\nline three\r",
    "quotes": "say \"hi\" and 'bye' `tick`",
    "backslash": "C:\\path\\to\\file \\u007c \\n",
    "unicode": "東京 — café — 🚀 — ü",
    "separators": "nel\x85 ls\u2028 ps\u2029 vt\x0b ff\x0c fs\x1c",
    "markdown": "| # | time (UTC) | event |\n|---|---|",
    "nested": {"list": [1, 2.5, None, True, {"deep": ["x|y", {"z": "\n"}]}], "empty": {}},
    "big": 2**70,
    "neg": -0.125,
    "nothing": None,
}


def test_awkward_details_round_trip_and_keep_one_line_per_event(tmp_path: Path) -> None:
    log = new_ledger(tmp_path)
    first = log.append("fragment", "api-dim-a", "agent@1", **AWKWARD)
    log.append("release", "api-dim-a", "agent@1", **AWKWARD)
    log.append("verify")  # no lane, no agent

    evs = log.events()
    assert [e.seq for e in evs] == [1, 2, 3]
    assert evs[0].details == AWKWARD and evs[1].details == AWKWARD
    assert (evs[0].event, evs[0].wave, evs[0].lane, evs[0].agent) == (
        "fragment",
        "44",
        "api-dim-a",
        "agent@1",
    )
    assert (evs[2].lane, evs[2].agent, evs[2].details) == ("", "", {})
    assert evs[0].chain == first.chain and evs[0].time == first.time
    # One event, one line, eight cells: nothing in the details breaks the Markdown table.
    lines = rows_of(log)
    assert len(lines) == HEADER_LINES + 3
    for row in lines[HEADER_LINES:]:
        assert row.count("|") == 9
    assert [e.line_no for e in evs] == [line_of(1), line_of(2), line_of(3)]
    assert log.verify().ok


def test_a_line_separator_in_the_last_row_does_not_fork_the_chain(tmp_path: Path) -> None:
    # U+2028, U+2029 and U+0085 are written raw (JSON leaves them be); str.splitlines()
    # breaks a row at them, so a tail read with it missed the last row and reused its number.
    for n, sep in enumerate(["\u2028", "\u2029", "\x85"]):
        log = new_ledger(tmp_path / str(n))
        log.append("fragment", "l1", "a", note=f"before{sep}after")
        second = log.append("submit", "l1", "a")
        assert second.seq == 2
        assert [e.seq for e in log.events()] == [1, 2]
        assert log.verify().ok


def test_the_chain_is_as_documented_and_anchored_in_the_state_dir(tmp_path: Path) -> None:
    log = new_ledger(tmp_path, "w45")
    fill(log, 4)
    prev = forge_genesis("w45")
    for row in rows_of(log)[HEADER_LINES:]:
        body, chain = body_and_chain(row)
        assert chain == forge_link(prev, body)
        prev = chain
    assert log.anchor_path == tmp_path / "state" / "ledger" / "w45.head"
    assert log.anchor_path.read_text() == f"4 {prev}\n"
    assert log.anchor() == (4, prev)


def test_an_unknown_event_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    log = new_ledger(tmp_path)
    log.append("claim", "l1", "a")
    before = log.path.read_bytes()
    with pytest.raises(ValueError, match="unknown ledger event"):
        log.append("claimed", "l1", "a")
    assert log.path.read_bytes() == before


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
# `event`, `lane` and `agent` are append()'s own parameters, so they cannot be detail keys.
DETAILS = st.dictionaries(
    st.text().filter(lambda k: k not in ("event", "lane", "agent")), JSON_VALUES, max_size=5
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(details=DETAILS, more=DETAILS)
def test_any_json_details_round_trip_and_verify(
    details: dict[str, Any], more: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = new_ledger(Path(tmp))
        log.append("fragment", "l1", "a", **details)
        log.append("submit", "l2", "b", **more)
        log.append("release", "l1", "a")  # after a tail read of whatever came before
        evs = log.events()
        assert [e.seq for e in evs] == [1, 2, 3]
        assert evs[0].details == details and evs[1].details == more
        report = log.verify()
        assert report.ok, report


# -- tamper detection ----------------------------------------------------------------------


@pytest.fixture
def six(tmp_path: Path) -> Ledger:
    log = new_ledger(tmp_path)
    fill(log, 6)
    assert log.verify().ok
    return log


def broken_at(log: Ledger) -> int:
    report = log.verify()
    assert not report.ok
    assert report.reason
    return report.bad_line


def test_an_edited_detail_is_named_by_its_line(six: Ledger) -> None:
    lines = rows_of(six)
    assert '"n":3' in lines[index_of(3)]
    lines[index_of(3)] = lines[index_of(3)].replace('"n":3', '"n":4')
    write_rows(six, lines)
    assert broken_at(six) == line_of(3)


def test_a_removed_row_is_named_by_the_line_it_left(six: Ledger) -> None:
    lines = rows_of(six)
    del lines[index_of(3)]
    write_rows(six, lines)
    # Line 9 used to hold event #3 and now holds #4.
    assert broken_at(six) == line_of(3)


def test_a_copied_row_inserted_elsewhere_is_named(six: Ledger) -> None:
    lines = rows_of(six)
    lines.insert(index_of(5), lines[index_of(2)])  # a copy of #2 between #4 and #5
    write_rows(six, lines)
    assert broken_at(six) == line_of(5)


def test_a_forged_row_with_a_plausible_number_and_chain_is_named(six: Ledger) -> None:
    lines = rows_of(six)
    _, chain3 = body_and_chain(lines[index_of(3)])
    body = "| 4 | 2026-01-01T00:00:00.000000Z | submit | 44 | lane-x | mallory | {} |"
    lines.insert(index_of(4), f"{body} {forge_link(chain3, body)} |")
    write_rows(six, lines)
    # The forged row chains correctly to #3, so the first bad line is the real #4 after it.
    assert broken_at(six) == line_of(5)


def test_two_swapped_rows_are_named_by_the_first(six: Ledger) -> None:
    lines = rows_of(six)
    lines[index_of(3)], lines[index_of(4)] = lines[index_of(4)], lines[index_of(3)]
    write_rows(six, lines)
    assert broken_at(six) == line_of(3)


def test_a_text_line_slipped_between_rows_is_named(six: Ledger) -> None:
    lines = rows_of(six)
    lines.insert(index_of(4), "All good here, nothing to see.")
    write_rows(six, lines)
    assert broken_at(six) == line_of(4)


def test_a_cut_tail_is_found_through_the_anchor(six: Ledger) -> None:
    lines = rows_of(six)
    write_rows(six, lines[: index_of(5)])  # #5 and #6 gone: the chain alone looks whole
    report = six.verify()
    assert not report.ok
    assert report.bad_line == line_of(5)
    assert "anchor records 6" in report.reason
    assert report.events == 4


def test_a_tail_rewritten_with_recomputed_hashes_is_found_through_the_anchor(
    six: Ledger,
) -> None:
    lines = rows_of(six)
    for seq in (4, 5, 6):
        lines[index_of(seq)] = lines[index_of(seq)].replace('"note":"ok"', '"note":"forged"')
    lines = rechain(lines)
    write_rows(six, lines)
    assert [e.details["note"] for e in six.events()][3:] == ["forged"] * 3
    # The chain is consistent again; only the anchored event #6 can be proved different.
    report = six.verify()
    assert not report.ok
    assert report.bad_line == line_of(6)
    assert "anchored" in report.reason


def test_a_rewritten_and_shortened_tail_is_found(six: Ledger) -> None:
    lines = rows_of(six)
    lines[index_of(5)] = lines[index_of(5)].replace('"note":"ok"', '"note":"forged"')
    write_rows(six, rechain(lines[: index_of(6)]))
    assert broken_at(six) == line_of(6)


def test_rows_forged_past_the_anchor_are_found(six: Ledger) -> None:
    lines = rows_of(six)
    for seq in (7, 8):
        lines.append(f"| {seq} | 2026-01-01T00:00:00.000000Z | verify | 44 | - | - | {{}} | 0 |")
    write_rows(six, rechain(lines))
    # One row past the anchor is the crash window of an append (next test); two are not.
    assert broken_at(six) == line_of(8)


def test_a_crash_between_row_and_anchor_is_tolerated_and_repaired(six: Ledger) -> None:
    anchor = six.anchor_path.read_bytes()
    six.append("submit", "lane-7", "a")
    six.anchor_path.write_bytes(anchor)  # as if killed after the row, before the anchor
    assert six.verify().ok
    six.append("release", "lane-7", "a")
    assert six.anchor() == (8, six.events()[-1].chain)
    assert six.verify().ok


def test_a_missing_anchor_is_reported(six: Ledger) -> None:
    six.anchor_path.unlink()
    report = six.verify()
    assert not report.ok and "anchor" in report.reason


def test_verify_while_others_append_sees_one_consistent_state(tmp_path: Path) -> None:
    # A verify that read the rows, then the anchor, raced appends made in between and
    # reported "the tail was cut off" for a whole ledger.
    log = new_ledger(tmp_path)
    fill(log, 50)
    writer = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(log.path), "44", str(tmp_path / "state"), "w", "150"],
    )
    try:
        checks = 0
        while writer.poll() is None or checks == 0:
            report = log.verify()
            assert report.ok, report
            checks += 1
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    assert log.verify().ok and len(log.events()) == 200


# Single-row mutations of a valid ledger: each must be caught, at the line where it happened.
_TEMPLATE: dict[str, bytes] = {}


def _template() -> tuple[bytes, bytes]:
    if not _TEMPLATE:
        with tempfile.TemporaryDirectory() as tmp:
            log = new_ledger(Path(tmp))
            log.append("claim", "l1", "a", base="0" * 40, note="東京 | x")
            fill(log, 5)
            _TEMPLATE["file"] = log.path.read_bytes()
            _TEMPLATE["anchor"] = log.anchor_path.read_bytes()
    return _TEMPLATE["file"], _TEMPLATE["anchor"]


ROWS = 6


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, list[str], int]:
    """(kind, mutated lines, the line verify must name)."""
    data, _ = _template()
    lines = data.decode("utf-8").split("\n")[:-1]
    rows = lines[HEADER_LINES:]
    kind = draw(st.sampled_from(["delete", "duplicate", "swap", "edit"]))
    i = draw(st.integers(0, ROWS - 1))
    if kind == "delete":
        del rows[i]
        bad = i
    elif kind == "duplicate":
        j = draw(st.integers(0, ROWS))
        rows.insert(j, rows[i])
        bad = j + 1 if j == i else j  # a copy placed just before itself: the later one is bad
    elif kind == "swap":
        j = draw(st.integers(0, ROWS - 1).filter(lambda j: j != i))
        rows[i], rows[j] = rows[j], rows[i]
        bad = min(i, j)
    else:
        row = rows[i]
        pos = draw(st.integers(0, len(row) - 1))
        char = draw(st.characters(codec="utf-8").filter(lambda c: c != row[pos]))
        rows[i] = row[:pos] + char + row[pos + 1 :]
        bad = i
    return kind, lines[:HEADER_LINES] + rows, HEADER_LINES + 1 + bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=mutations())
def test_any_single_row_mutation_is_detected_at_its_line(
    mutation: tuple[str, list[str], int],
) -> None:
    kind, lines, bad_line = mutation
    _, anchor = _template()
    with tempfile.TemporaryDirectory() as tmp:
        log = new_ledger(Path(tmp))
        log.path.parent.mkdir(parents=True)
        log.anchor_path.parent.mkdir(parents=True)
        log.anchor_path.write_bytes(anchor)
        write_rows(log, lines)
        report = log.verify()
        assert not report.ok, kind
        assert report.bad_line == bad_line, (kind, report)


# -- concurrency and torn rows -------------------------------------------------------------

WORKER = """
import os, sys, time
from pathlib import Path
from lanes.ledger import Ledger
path, wave, state, worker, count = sys.argv[1:6]
go = Path(path).parent / "go"
while len(sys.argv) > 6 and not go.exists():
    time.sleep(0.001)
log = Ledger(Path(path), wave, Path(state))
for i in range(int(count)):
    pad = "x" * (int(worker.lstrip("w") or 0) * 97 % 5000) if i % 7 == 0 else ""
    log.append("fragment", f"lane-{worker}", worker, worker=worker, i=i, pad=pad, s="é|\\n")
"""


@pytest.mark.slow
def test_sixteen_processes_appending_at_once_lose_and_tear_nothing(tmp_path: Path) -> None:
    procs_n, per = 16, 50
    log = new_ledger(tmp_path)
    log.path.parent.mkdir(parents=True)
    cmd = [sys.executable, "-c", WORKER, str(log.path), "44", str(tmp_path / "state")]
    procs = [subprocess.Popen([*cmd, f"w{w}", str(per), "wait"]) for w in range(procs_n)]
    (log.path.parent / "go").touch()
    for p in procs:
        assert p.wait(timeout=120) == 0
    evs = log.events()
    total = procs_n * per
    assert [e.seq for e in evs] == list(range(1, total + 1))
    seen = [(e.details["worker"], e.details["i"]) for e in evs]
    assert sorted(seen) == sorted((f"w{w}", i) for w in range(procs_n) for i in range(per))
    assert all(e.details["s"] == "é|\n" for e in evs)
    # No torn or interleaved row: every line after the header is a whole event.
    assert len(rows_of(log)) == HEADER_LINES + total
    # Each worker's own events are in its own order.
    for w in range(procs_n):
        mine = [e.details["i"] for e in evs if e.details["worker"] == f"w{w}"]
        assert mine == list(range(per))
    report = log.verify()
    assert report.ok and report.events == total
    assert log.anchor() == (total, evs[-1].chain)


TORN = '| 4 | 2026-01-01T00:00:00.000000Z | fragment | 44 | l | a | {"note":"東'.encode()[:-1]


def test_a_torn_final_row_is_ignored_by_readers_and_cut_by_the_next_append(
    tmp_path: Path,
) -> None:
    log = new_ledger(tmp_path)
    fill(log, 3)
    whole = log.path.read_bytes()
    with open(log.path, "ab") as fh:
        fh.write(TORN)  # ends inside a multi-byte character, with no newline
    assert [e.seq for e in log.events()] == [1, 2, 3]
    assert log.verify().ok
    ev = log.append("submit", "lane-4", "a")
    assert ev.seq == 4
    data = log.path.read_bytes()
    assert data.startswith(whole) and data.endswith(b"\n") and TORN not in data
    assert [e.seq for e in log.events()] == [1, 2, 3, 4]
    assert log.verify().ok


HOLDER = """
import os, sys, time
from pathlib import Path
from filelock import FileLock
from lanes.ledger import Ledger
log = Ledger(Path(sys.argv[1]), "44", Path(sys.argv[2]))
with FileLock(str(log.lock_path)):
    fd = os.open(log.path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, sys.stdin.buffer.read())
    print("torn", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_mid_row_leaves_nothing_the_next_append_cannot_mend(
    tmp_path: Path,
) -> None:
    log = new_ledger(tmp_path)
    fill(log, 3)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(log.path), str(tmp_path / "state")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        holder.stdin.write(TORN)
        holder.stdin.close()
        assert holder.stdout.readline() == b"torn\n"
        assert [e.seq for e in log.events()] == [1, 2, 3]  # readers never wait for the lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        holder.stdout.close()
    assert log.append("submit", "lane-4", "a").seq == 4  # the lock died with its holder
    assert [e.seq for e in log.events()] == [1, 2, 3, 4]
    assert log.verify().ok


# -- the CLI -------------------------------------------------------------------------------


WIDE = {"COLUMNS": "400"}  # rich wraps at 80 columns when stdout is not a terminal


@pytest.fixture
def wave44(cfg: Config) -> Ledger:
    log = claims.ledger(cfg, "44")
    log.append("claim", "api-dim-a", "agent-1", base="b" * 40)
    log.append("claim", "api-dim-b", "agent-2", base="b" * 40)
    log.append("fragment", "api-dim-a", "agent-1", kind="manifest", note="a | b")
    log.append("submit", "api-dim-a", "agent-1", commits=2)
    log.append("release", "api-dim-b", "agent-2")
    return log


@pytest.mark.local_coord  # edits the O_APPEND file, the truth locally
def test_cli_verify_says_whole_then_names_the_broken_line(seed_repo: Path, wave44: Ledger) -> None:
    proc = run_lanes(seed_repo, "ledger", "verify", "44", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1 and doc["ok"] is True and doc["events"] == 5
    human = run_lanes(seed_repo, "ledger", "verify", "44")
    assert human.returncode == 0 and human.stdout == "" and "5 events" in human.stderr

    lines = rows_of(wave44)
    lines[index_of(2)] = lines[index_of(2)].replace("agent-2", "agent-9")
    write_rows(wave44, lines)
    proc = run_lanes(seed_repo, "ledger", "verify", "44", "--json")
    assert proc.returncode == 4
    doc = json.loads(proc.stdout)
    assert doc["error"] == "ledger-broken"
    assert doc["bad_line"] == line_of(2)
    assert doc["schema_version"] == 1 and doc["ok"] is False and doc["events"] == 1
    assert doc["path"] == str(wave44.path)
    human = run_lanes(seed_repo, "ledger", "verify", "44", env=WIDE)
    assert human.returncode == 4 and f"line {line_of(2)}" in human.stderr


def test_cli_ledger_json_lines_and_filters(seed_repo: Path, wave44: Ledger) -> None:
    def json_lines(*args: str) -> list[dict[str, Any]]:
        proc = run_lanes(seed_repo, "ledger", "44", "--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line) for line in proc.stdout.splitlines()]

    docs = json_lines()
    assert [d["seq"] for d in docs] == [1, 2, 3, 4, 5]
    for d in docs:
        assert {"schema_version", "time", "event", "wave", "lane", "agent"} <= d.keys()
        assert d["schema_version"] == 1 and d["wave"] == "44"
    assert docs[2]["details"] == {"kind": "manifest", "note": "a | b"}
    assert [d["event"] for d in json_lines("--lane", "api-dim-a")] == [
        "claim",
        "fragment",
        "submit",
    ]
    assert [d["seq"] for d in json_lines("--agent", "agent-2")] == [2, 5]
    assert json_lines("--lane", "api-dim-a", "--agent", "agent-2") == []
    # The one wave is found without being named; the table is for people.
    proc = run_lanes(seed_repo, "ledger", env=WIDE)
    assert proc.returncode == 0 and "api-dim-b" in proc.stdout


def test_cli_follow_prints_new_events_as_they_come(seed_repo: Path, wave44: Ledger) -> None:
    proc = subprocess.Popen(
        [*LANES, "ledger", "44", "--follow", "--json", "--lane", "api-dim-c"],
        cwd=seed_repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        time.sleep(0.3)  # let it print the backlog (none for this lane) and start polling
        wave44.append("claim", "api-dim-c", "agent-3")
        wave44.append("claim", "api-dim-d", "agent-4")  # filtered out
        wave44.append("submit", "api-dim-c", "agent-3")
        got = [json.loads(lines.get(timeout=15)), json.loads(lines.get(timeout=15))]
        assert [(d["seq"], d["event"], d["lane"]) for d in got] == [
            (6, "claim", "api-dim-c"),
            (8, "submit", "api-dim-c"),
        ]
        assert all(d["schema_version"] == 1 for d in got)
        assert proc.poll() is None  # still following
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
        proc.stdout.close()
    assert lines.empty()


def test_cli_refuses_a_bad_wave_name(seed_repo: Path) -> None:
    proc = run_lanes(seed_repo, "ledger", "verify", "Bad/Wave", "--json")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["schema_version"] == 1


def test_cli_an_unknown_wave_is_exit_2_and_leaves_no_lock(seed_repo: Path, cfg: Config) -> None:
    for args in (("ledger", "99"), ("ledger", "verify", "99")):
        proc = run_lanes(seed_repo, *args, "--json")
        assert proc.returncode == 2 and json.loads(proc.stdout)["error"] == "unknown-wave"
    assert not list(cfg.state_dir.glob("ledger/99*"))


def test_cli_inside_a_lane_the_ledger_is_its_wave(seed_repo: Path, cfg: Config) -> None:
    worktree = Path(claims.claim(cfg, "44", "a", "bot").worktree)
    claims.claim(cfg, "45", "b", "bot")
    assert run_lanes(seed_repo, "ledger", "--json").returncode == 2  # two waves: which?
    proc = run_lanes(worktree / "src", "ledger", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {json.loads(line)["wave"] for line in proc.stdout.splitlines()} == {"44"}
    verified = run_lanes(worktree, "ledger", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["wave"] == "44"


@pytest.mark.local_coord  # deletes the O_APPEND file; on a remote it is a rendering
def test_cli_verify_of_a_wave_whose_file_was_deleted_is_broken(
    seed_repo: Path, cfg: Config
) -> None:
    claims.claim(cfg, "44", "a", "bot")
    cfg.ledger_path("44").unlink()
    proc = run_lanes(seed_repo, "ledger", "verify", "44", "--json")
    assert proc.returncode == 4 and json.loads(proc.stdout)["error"] == "ledger-broken"


# -- the anchor is never moved over damage; what a stopped append leaves is mended ----------


def test_an_append_never_hides_a_cut_tail_from_verify(six: Ledger) -> None:
    """Before, the next append wrote its own anchor over the one that proved the cut, and
    verify passed again."""
    write_rows(six, rows_of(six)[: index_of(5)])  # rows 5 and 6 cut off
    assert not six.verify().ok
    ev = six.append("submit", "lane-7", "a")
    assert any("does not match its anchor" in w for w in ev.warnings)
    report = six.verify()
    assert not report.ok and "cut off" in report.reason
    assert six.anchor() is not None and six.anchor()[0] == 6


def test_an_append_never_hides_a_rewritten_tail_or_a_deleted_anchor(six: Ledger) -> None:
    lines = rows_of(six)
    lines[index_of(6)] = lines[index_of(6)].replace('"n":6', '"n":66')
    write_rows(six, rechain(lines))
    six.append("submit", "lane-7", "a")
    assert not six.verify().ok
    six.anchor_path.unlink()
    six.append("submit", "lane-8", "a")
    assert not six.anchor_path.exists() and "anchor is missing" in six.verify().reason


def test_an_anchor_left_behind_by_a_killed_append_is_brought_forward_with_its_temp_gone(
    six: Ledger,
) -> None:
    anchor = six.anchor_path.read_bytes()
    six.append("submit", "lane-7", "a")
    six.anchor_path.write_bytes(anchor)  # killed after its row, with its temp file left
    leftover = six.anchor_path.with_name(six.anchor_path.name + ".tmp99999")
    leftover.write_text("7 0000\n")
    ev = six.append("release", "lane-7", "a")
    assert ev.warnings == () and six.anchor() == (8, ev.chain)
    assert not leftover.exists() and six.verify().ok


def test_an_anchor_behind_a_row_that_does_not_chain_is_not_brought_forward(six: Ledger) -> None:
    """One row past the anchor is tolerated only when it chains from the anchored row."""
    lines, anchor = rows_of(six), six.anchor_path.read_bytes()
    six.append("submit", "lane-7", "a")
    six.anchor_path.write_bytes(anchor)  # as if killed before its anchor
    forged = rows_of(six)[-1].replace("lane-7", "lane-x")  # its chain cell no longer fits
    write_rows(six, [*lines, forged])
    six.append("release", "lane-7", "a")
    assert six.anchor() is not None and six.anchor()[0] == 6
    assert not six.verify().ok
