"""The port registry: `ports` consecutive ports a lane, in slots of `port_range`.

One registry a machine: `<git common dir>/lanes/ports/slots.json`, shared by every worktree
of the repository (also with `remote = ...`: ports are this machine's), changed only under
`ports/lock` (a filelock the kernel releases the instant its holder dies), written to a
scratch file and renamed over, so a kill leaves the old registry or the new one.

A slot names the claim it was taken for (wave, lane, agent, pid, time, as in its claim
record, and the `.claiming-*` directory the claim was prepared in). It is live while that
claim is being made (the prepared directory exists, and its claimer is alive) or while the
lane's claim directory holds that very claim (a record with this port); otherwise it may be taken over, so a
claimer killed at any line never keeps a port for good. Release, reap and integration give
a lane's slot back at once (`free`).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any

from lanes.errors import OperationalError, os_error
from lanes.names import check_agent, check_lane, check_wave

if TYPE_CHECKING:
    from lanes.claims import ClaimRecord
    from lanes.config import Config

FOLDER = "ports"
SLOTS = "slots.json"
WAIT_FOR_PREPARED = 5.0  # seconds a full range is waited on while claims are being prepared
_CLAIMING = re.compile(r"\.claiming-[a-z0-9._-]{1,40}-[0-9a-f]{32}")


@dataclass(frozen=True)
class Slot:
    wave: str
    lane: str
    port: int  # the first port; the lane has port .. port+count-1
    count: int
    agent: str
    pid: int
    time: str
    claiming: str  # the `.claiming-*` directory of the claim being made, in the wave's dir

    @property
    def ports(self) -> range:
        return range(self.port, self.port + self.count)


def allocate(
    cfg: Config, wave: str, lane: str, agent: str, pid: int, time: str, claiming: str
) -> int:
    """Take the lowest free slot for a claim being prepared in `<wave dir>/<claiming>`
    (which must exist already: while it does, the slot is live); its first port.
    Raises `no-free-port` when every slot of `port_range` belongs to a live lane."""
    setup = cfg.settings.setup
    low, high = setup.port_bounds
    count = setup.ports
    deadline = monotonic() + WAIT_FOR_PREPARED
    while True:
        with _locked(cfg) as slots:
            port = _first_free(slots, low, high, count)
            if port is None:  # take over the slots of lanes no longer held
                slots[:] = [s for s in slots if _live(cfg, s)]
                port = _first_free(slots, low, high, count)
            if port is not None:
                slots.append(Slot(wave, lane, port, count, agent, pid, time, claiming))
                return port
            # Claims being prepared hold slots for a moment (most of them lose a race for
            # a lane and give theirs back at once): wait for them before giving up.
            if not any(_preparing(cfg, s) for s in slots) or monotonic() > deadline:
                held = sorted({f"{s.wave}/{s.lane}" for s in slots})
                break
        sleep(0.05)
    raise OperationalError(
        "no-free-port",
        f"no {count} free ports left in port_range {setup.port_range} for "
        f"{wave}/{lane}: {len(held)} live lane(s) hold them ({', '.join(held[:8])}"
        + (", ..." if len(held) > 8 else "")
        + ")",
        hint="release the lanes you no longer need (lanes release, lanes gc), or widen "
        "port_range, or lower ports in [setup]; then claim again",
        port_range=setup.port_range,
        ports=count,
        held=held,
    )


def adopt(cfg: Config, wave: str, lane: str, claiming: str, record: dict[str, Any]) -> int | None:
    """The claim that won is not the one prepared in `claiming` but an earlier one of this
    agent on this machine, finished by it (remote coordination): its record's port is
    registered for it, the prepared slot dropped. Raises `no-free-port` when another live
    lane holds that port meanwhile (the caller undoes the claim)."""
    port = record.get("port")
    with _locked(cfg) as slots:
        slots[:] = [s for s in slots if s.claiming != claiming]
        if not isinstance(port, int):
            return None
        count = max(cfg.settings.setup.ports, 1)
        pid = record.get("pid")
        mine = Slot(
            wave,
            lane,
            port,
            count,
            str(record.get("agent", "")),
            pid if isinstance(pid, int) else 0,
            str(record.get("time", "")),
            "",
        )
        if any(s.port == port and (s.wave, s.lane) == (wave, lane) for s in slots):
            return port
        taken = {p for s in slots if _live(cfg, s) for p in s.ports}
        if taken & set(mine.ports):
            raise OperationalError(
                "no-free-port",
                f"the claim of {wave}/{lane} being finished holds port {port}, which another "
                "live lane holds now: the claim is undone",
                hint=f"claim {wave}/{lane} again: it gets a free port",
            )
        slots.append(mine)
    return port


def drop(cfg: Config, claiming: str) -> None:
    """Give back the slot taken for the claim prepared in `claiming` (the claim was lost,
    or undone)."""
    with _locked(cfg) as slots:
        slots[:] = [s for s in slots if s.claiming != claiming]


def free(cfg: Config, wave: str, lane: str, claim: ClaimRecord | None = None) -> list[int]:
    """Give back the lane's slot (it was released, reaped or integrated); the first ports
    freed. With `claim`, only the slot of that claim (a new claim of the lane made since
    keeps its own); a slot a claimer of the lane is preparing just now is always kept."""
    check_wave(wave)
    check_lane(lane)
    freed: list[int] = []
    with _locked(cfg) as slots:
        kept = []
        for s in slots:
            ours = (s.wave, s.lane) == (wave, lane) and not _preparing(cfg, s)
            if ours and claim is not None:
                ours = _same(s, claim)
            if ours:
                freed.append(s.port)
            else:
                kept.append(s)
        slots[:] = kept
    return freed


def live(cfg: Config) -> list[Slot]:
    """Every slot whose lane is held (for status and tests); changes nothing."""
    return [s for s in _read(cfg) if _live(cfg, s)]


def _first_free(slots: list[Slot], low: int, high: int, count: int) -> int | None:
    taken = {p for s in slots for p in s.ports}
    for first in range(low, high - count + 2, count):
        if not any(p in taken for p in range(first, first + count)):
            return first
    return None


def _preparing(cfg: Config, slot: Slot) -> bool:
    """The slot's claim is being prepared now: its directory is there, and its claimer
    (a process of this machine: the registry is this machine's) is alive to publish it."""
    if not slot.claiming or not (cfg.wave_dir(slot.wave) / slot.claiming).is_dir():
        return False
    try:
        os.kill(slot.pid, 0)
    except ProcessLookupError:
        return False  # killed while preparing: its claim can never be published
    except OSError:
        pass  # alive, another user's
    return True


def _live(cfg: Config, slot: Slot) -> bool:
    """The slot's claim is being made, or is the claim its lane's directory holds.
    The prepared directory is looked at first: it is renamed onto the claim directory in
    one step, so one of the two is seen whatever moment this runs at."""
    if _preparing(cfg, slot):
        return True
    from lanes import claims

    record = claims.read_record(cfg.claim_dir(slot.wave, slot.lane))
    return record is not None and _same(slot, record)


def _same(slot: Slot, record: ClaimRecord) -> bool:
    """The slot was taken for exactly this claim."""
    return (record.port, record.agent, record.pid, record.time) == (
        slot.port,
        slot.agent,
        slot.pid,
        slot.time,
    )


def _path(cfg: Config) -> Path:
    return cfg.state_dir / FOLDER / SLOTS


@contextmanager
def _locked(cfg: Config) -> Iterator[list[Slot]]:
    """The registry's slots, to change in place under its lock; written back on success."""
    from filelock import FileLock

    folder = cfg.state_dir / FOLDER
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "the port registry could not be made", path=folder) from exc
    with FileLock(str(folder / "lock")):
        slots = _read(cfg)
        before = list(slots)
        yield slots
        if slots != before:
            _write(cfg, slots)


def _read(cfg: Config) -> list[Slot]:
    """The registry as written; unreadable (edited by hand), it is rebuilt from the claim
    records that carry a port, which is what it must agree with."""
    path = _path(cfg)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return _rebuild(cfg)
    slots = raw.get("slots") if isinstance(raw, dict) else None
    if not isinstance(slots, list):
        return _rebuild(cfg)
    found = []
    for item in slots:
        slot = _slot(item)
        if slot is None:
            return _rebuild(cfg)
        found.append(slot)
    return found


def _slot(item: Any) -> Slot | None:
    """A slot read back, checked as strictly as it is written (names, a port, a pid)."""
    try:
        slot = Slot(**item)
        check_wave(slot.wave)
        check_lane(slot.lane)
        if slot.agent:
            check_agent(slot.agent)
    except Exception:  # a wrong field, a wrong type, a name lanes never writes
        return None
    fits = (
        all(type(v) is int for v in (slot.port, slot.count, slot.pid))
        and isinstance(slot.time, str)
        and isinstance(slot.claiming, str)
        and 1 <= slot.port <= 65535
        and 1 <= slot.count <= 65535
        and (not slot.claiming or bool(_CLAIMING.fullmatch(slot.claiming)))
    )
    return slot if fits else None


def _rebuild(cfg: Config) -> list[Slot]:
    from lanes import claims, state

    found = []
    for wave in state.local_waves(cfg):
        for lane, claim_dir in state.lane_dirs(cfg, wave):
            record = claims.read_record(claim_dir)
            if record is not None and record.port is not None:
                count = max(cfg.settings.setup.ports, 1)
                found.append(
                    Slot(wave, lane, record.port, count, record.agent, record.pid, record.time, "")
                )
    return found


def _write(cfg: Config, slots: list[Slot]) -> None:
    path = _path(cfg)
    tmp = path.with_name(f".{SLOTS}.{uuid.uuid4().hex}")
    data = json.dumps({"slots": [asdict(s) for s in slots]}, indent=1) + "\n"
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise os_error(exc, "the port registry was not written", path=path) from exc
