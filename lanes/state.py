"""A lane's state, derived: from its ledger events, checked against its claim directory.

claimed -> submitted -> integrated; submitted -> bounced -> submitted;
claimed|submitted|bounced -> released; a stale claimed lane -> reaped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lanes import claims, git
from lanes.config import Config
from lanes.errors import BadInput, Refused
from lanes.ledger import LEDGER_NAME
from lanes.names import check_wave

_STATE_OF_EVENT = {
    "claim": "claimed",
    "submit": "submitted",
    "bounced": "bounced",
    "integrated": "integrated",
    "release": "released",
    "reap": "reaped",
}
HOLDING = ("claimed", "submitted", "bounced")


@dataclass
class LaneHistory:
    lane: str
    state: str
    agent: str
    submit_seq: int = 0  # ledger position of the latest submit: the integration order
    submit_details: dict[str, Any] | None = None
    bounce_reason: str = ""  # why the integrator bounced it last (when state is bounced)


def histories(cfg: Config, wave: str, held: dict[str, Any] | None = None) -> dict[str, LaneHistory]:
    """Every lane the wave has seen, with its state as the ledger and the claim dirs say
    (on a remote: the claim refs, `held` when the caller has just read them)."""
    check_wave(wave)
    found: dict[str, LaneHistory] = {}
    for ev in claims.ledger(cfg, wave).events():
        new_state = _STATE_OF_EVENT.get(ev.event)
        if new_state is None or not ev.lane:
            continue
        hist = found.setdefault(ev.lane, LaneHistory(ev.lane, new_state, ev.agent))
        hist.state = new_state
        if ev.agent:
            hist.agent = ev.agent
        if ev.event == "submit":
            hist.submit_seq, hist.submit_details = ev.seq, ev.details
        if ev.event == "bounced":
            hist.bounce_reason = str(ev.details.get("reason", ""))
    from lanes import coord

    c = coord.for_config(cfg)
    if c.kind != "local":
        # The claim refs decide, as the claim dirs do on one machine.
        if held is None:
            held = c.holders(wave)
        for lane, holder in held.items():
            known = found.get(lane)
            if known is None or known.state in ("released", "reaped"):
                found[lane] = LaneHistory(lane, "claimed", holder.agent)
        for hist in found.values():
            if hist.state in HOLDING and hist.lane not in held:
                hist.state = "released"
        return found
    for lane, claim_dir in lane_dirs(cfg, wave):
        known = found.get(lane)
        if known is None or known.state in ("released", "reaped"):
            # The claim dir decides: a claim whose ledger line is not written yet.
            record = claims.read_record(claim_dir)
            found[lane] = LaneHistory(lane, "claimed", record.agent if record else "")
    for hist in found.values():
        if hist.state in HOLDING and not cfg.claim_dir(wave, hist.lane).is_dir():
            hist.state = "released"  # archived, but died before the ledger line
    return found


def lane_state(cfg: Config, wave: str, lane: str) -> str | None:
    hist = histories(cfg, wave).get(lane)
    return hist.state if hist else None


def require_open(cfg: Config, wave: str, lane: str, doing: str) -> None:
    """Refuse (exit 4) `doing` on a lane that is not claimed or bounced: once submitted,
    its branch and fragments are the integrator's."""
    now = lane_state(cfg, wave, lane)
    if now not in ("claimed", "bounced"):
        raise Refused(
            "lane-not-open",
            f"lane {wave}/{lane} is {now}: only a claimed or bounced lane can {doing}",
            hint="see lanes status; a submitted lane comes back if it bounces",
        )


def lane_dirs(cfg: Config, wave: str) -> list[tuple[str, Path]]:
    wave_dir = cfg.wave_dir(wave)
    if not wave_dir.is_dir():
        return []
    return sorted(
        (p.name, p)
        for p in wave_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / claims.RECORD).is_file()
    )


def waves(cfg: Config) -> list[str]:
    """Waves with a ledger, or with a claim, where the coordination keeps them."""
    from lanes import coord

    return coord.for_config(cfg).waves()


def local_waves(cfg: Config) -> list[str]:
    """Waves with a ledger, or with a claim (its claimer was killed before the wave's first
    ledger row: gc must still see the claim, or the lane would stay held for good)."""
    if not cfg.inbox.is_dir():
        return []
    found = []
    for p in cfg.inbox.iterdir():
        if not p.is_dir() or p.name.startswith("."):
            continue
        if (p / LEDGER_NAME).exists() or any((d / claims.RECORD).is_file() for d in p.iterdir()):
            found.append(p.name)
    return sorted(found)


def known_wave(cfg: Config, wave: str, otherwise: str = "") -> str:
    """`wave`, if valid and it has a ledger; else exit 2 naming the waves there are."""
    check_wave(wave)
    known = waves(cfg)
    if wave not in known:
        raise BadInput(
            "unknown-wave",
            f"wave {wave!r} has no ledger in {cfg.inbox}",
            hint="known waves: " + (", ".join(known) or "none yet") + otherwise,
        )
    return wave


def submitted_in_order(cfg: Config, wave: str) -> list[LaneHistory]:
    """Lanes waiting for the integrator, in the order they were (last) submitted."""
    pending = [h for h in histories(cfg, wave).values() if h.state == "submitted"]
    return sorted(pending, key=lambda h: h.submit_seq)


@dataclass(frozen=True)
class LaneStatus:
    wave: str
    lane: str
    agent: str
    state: str
    worktree: str
    branch: str
    claimed_at: str
    age_seconds: int | None
    heartbeat_age_seconds: int | None
    stale: bool
    commits_ahead: int  # of main: what would land
    fragments: int
    bounce_reason: str = ""
    # What lanes could not believe in the lane's files (a claim record that fails its
    # checks, a time that is not a time or lies in the future, a heartbeat that is not
    # lanes' file), and what it does about it: shown instead of a crash.
    problems: list[str] = field(default_factory=list)
    # On a remote: the host of a lane held on another machine (its worktree is there).
    held_on: str = ""


def status(cfg: Config, wave: str | None = None) -> list[LaneStatus]:
    """Every lane of `wave`, or of every wave when it is None. A wave named but invalid
    (the empty name too) or unknown is bad input, as for lanes verify and lanes ledger."""
    from lanes import coord

    rows = []
    now = time.time()
    c = coord.for_config(cfg)
    for w in [known_wave(cfg, wave)] if wave is not None else waves(cfg):
        held = c.holders(w) if c.kind != "local" else None
        for lane, hist in sorted(histories(cfg, w, held).items()):
            claim_dir = cfg.claim_dir(w, lane)
            problems: list[str] = []
            record = claims.read_record(claim_dir, problems)
            holder = (held or {}).get(lane)
            if record is None and holder is not None and not claim_dir.is_dir():
                rows.append(_remote_row(cfg, w, lane, hist, holder, now))
                continue
            if record is None and problems:
                problems.append(
                    "lanes leaves this lane alone until the record is fixed or its claim "
                    f"directory moved away: gc does not reap it, release refuses it ({claim_dir})"
                )
            branch = cfg.branch(w, lane)
            hb = claims.heartbeat_age(claim_dir, now, problems) if record else None
            age = _age(record.time, now, problems) if record else None
            frag_dir = claim_dir / claims.FRAGMENTS
            rows.append(
                LaneStatus(
                    wave=w,
                    lane=lane,
                    agent=hist.agent,
                    state=hist.state,
                    worktree=record.worktree if record else str(cfg.worktree_path(w, lane)),
                    branch=branch,
                    claimed_at=record.time if record else "",
                    age_seconds=age,
                    heartbeat_age_seconds=int(hb) if hb is not None else None,
                    stale=hist.state == "claimed"
                    and hb is not None
                    and hb > cfg.stale_after_seconds,
                    # landed commits are copies on main: nothing of an integrated lane waits
                    commits_ahead=0
                    if hist.state == "integrated"
                    else git.commits_ahead(cfg.main_checkout, cfg.main, branch),
                    fragments=len(list(frag_dir.glob("*.json"))) if frag_dir.is_dir() else 0,
                    bounce_reason=hist.bounce_reason if hist.state == "bounced" else "",
                    problems=problems,
                )
            )
    return rows


def _remote_row(
    cfg: Config, wave: str, lane: str, hist: LaneHistory, holder: Any, now: float
) -> LaneStatus:
    """A lane held on another machine: what its claim ref says (the record in its commit,
    the heartbeat its committer time); its worktree is on that machine."""
    problems: list[str] = []
    record = holder.record or {}
    stamp = str(record.get("time", ""))
    age = _age(stamp, now, problems) if stamp else None
    hb: int | None = None
    if holder.beat:
        if holder.beat > now + FUTURE_SKEW:
            problems.append(
                f"the last heartbeat of {wave}/{lane} on the remote is in the future "
                "(its machine's clock is ahead): not judged stale"
            )
        else:
            hb = max(0, int(now - holder.beat))
    host = str(record.get("host", "")) or "unknown"
    branch = cfg.branch(wave, lane)
    return LaneStatus(
        wave=wave,
        lane=lane,
        agent=hist.agent or holder.agent,
        state=hist.state,
        worktree=str(record.get("worktree", "")),
        branch=branch,
        claimed_at=stamp,
        age_seconds=age,
        heartbeat_age_seconds=hb,
        stale=hist.state == "claimed" and hb is not None and hb > cfg.stale_after_seconds,
        commits_ahead=0
        if hist.state == "integrated"
        else git.commits_ahead(cfg.main_checkout, cfg.main, branch),
        fragments=0,
        bounce_reason=hist.bounce_reason if hist.state == "bounced" else "",
        problems=problems,
        held_on=host,
    )


FUTURE_SKEW = 300  # seconds a time read back may be ahead of this clock and still count as now


def _age(stamp: str, now: float, problems: list[str]) -> int | None:
    """Seconds since the claim was made, or None (with the reason in `problems`) for a time
    that is not one or lies in the future; claims.read_record has said so for the first."""
    claimed = _epoch(stamp)
    if claimed is None:
        return None
    if claimed > now + FUTURE_SKEW:
        problems.append(f"claim time {stamp} is in the future (a clock went back, or a hand edit)")
        return None
    return max(0, int(now - claimed))


def _epoch(stamp: str) -> float | None:
    """An ISO 8601 time (lanes writes 2026-01-31T12:00:00Z) as epoch seconds; a time
    without a zone is UTC; None when it is not a time."""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
