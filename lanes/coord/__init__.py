"""The coordination interface: who holds a lane, what happened, who integrates.

Two versions stand behind it (docs/remote.md): `local` (the default) keeps everything in
the main checkout's inbox and git dir, as lanes always did: a claim is one rename of a
prepared directory, the ledger an O_APPEND file with a lock and an anchor, a heartbeat an
mtime, the integrator's lease a filelock, landing an `update-ref` compare-and-swap.
`remote` (`remote = "origin"`) keeps the truth on that git remote: a claim is a ref created
only if absent, the ledger a chain of commits appended by compare-and-swap, every move
pinned to the exact commit read, and landing one atomic push of main with its record.
The inbox stays as the local working area (fragments being dropped, saved work) and the
ledger's rendering; no decision is taken on a cached read.

Commands reach either through `for_config(cfg)`; nothing else decides which.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lanes.config import Config
    from lanes.ledger import Event, VerifyReport


@dataclass(frozen=True)
class Holder:
    """Who holds a lane, as read just now from where the truth lives."""

    agent: str
    record: dict[str, Any] | None  # the claim record as published (None: unreadable)
    token: str = ""  # what a pinned move must still find: the claim commit (remote)
    beat: float | None = None  # epoch seconds of the last heartbeat; None: unknown
    submitted: bool = False  # the claim carries its fragments (remote)
    fragments: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class PendingEvent:
    """An event to record together with a landing."""

    event: str
    lane: str = ""
    agent: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Landed:
    """What `land` did: moved (main is at `new`, its record with it) or not (`found` is
    what main holds instead, `why` git's answer); a lost race changes nothing."""

    moved: bool
    found: str = ""
    why: str = ""
    events: list[Event] = field(default_factory=list)


class EventLog(Protocol):
    """One wave's ledger, wherever it lives."""

    path: Path  # the rendering people read: <inbox>/<wave>/AGENT_LEDGER.md
    anchor_path: Path  # where this machine keeps the tip it saw last

    def append(self, event: str, lane: str = "", agent: str = "", **details: Any) -> Event: ...

    def events(self) -> list[Event]: ...

    def verify(self) -> VerifyReport: ...

    def follow(self, poll: float = 0.2) -> Any: ...


class Coord(Protocol):
    """The operations every command coordinates through (issue 9)."""

    kind: str  # "local" or "remote"
    where: str  # for messages: "the inbox" or "remote origin (URL)"

    # -- claims ------------------------------------------------------------------------
    def publish_claim(
        self, wave: str, lane: str, record: dict[str, Any], prepared: Path
    ) -> tuple[bool, Holder]:
        """Publish a claim whose record is `record` and whose local claim directory is
        prepared at `prepared`: (True, this caller's hold) when it now holds the lane, else
        (False, the holder read back); then `prepared` is left for the caller to discard."""
        ...

    def undo_claim(self, wave: str, lane: str, ours: Holder) -> None:
        """Take back a claim just published (its worktree could not be made)."""
        ...

    def holder(self, wave: str, lane: str) -> Holder | None:
        """The lane's holder, read now (never from a cache); None when it is free."""
        ...

    def holders(self, wave: str) -> dict[str, Holder]:
        """Every held lane of the wave, read now."""
        ...

    def heartbeat(self, wave: str, lane: str, expect: Holder) -> Holder:
        """Record that `expect` is alive, only if it still holds the lane (Refused
        `not-held` otherwise)."""
        ...

    def retire(
        self,
        wave: str,
        lane: str,
        expect: Holder,
        why: str,
        record: Callable[[Path], PendingEvent] | None = None,
    ) -> Path:
        """Release or reap (`why`: released, reaped, undone) the lane, only if `expect`
        still holds it (Contention/Refused otherwise): the lane is free; returns where its
        local claim directory went (archived). `record(dest)` is the ledger row of it
        (`release`, `reap`), told where the claim directory goes: remote, in the same
        atomic push as the claim's delete, so the remote never shows the lane freed
        without its row; locally appended once the rename freed it."""
        ...

    def submit(
        self, wave: str, lane: str, expect: Holder, branch: str, fragments: dict[str, bytes]
    ) -> Holder:
        """Hand the lane's branch and fragments over with the claim (remote: the branch
        pushed, the claim moved to a commit holding them, in one atomic push)."""
        ...

    def waves(self) -> list[str]:
        """Waves with a ledger or a claim where the truth lives."""
        ...

    # -- the ledger --------------------------------------------------------------------
    def ledger(self, wave: str) -> EventLog: ...

    # -- the integrator ----------------------------------------------------------------
    def fetch_main(self) -> str | None:
        """main's tip where the truth lives, its objects brought here (remote; BadInput
        `no-main` when the remote has none); None: this repository's main is the truth."""
        ...

    def stage_wave(self, wave: str) -> None:
        """Bring here what a pass reads of the wave: remote, the lane branches of its
        claims and their fragments (under `fragment_dir`); locally everything is here."""
        ...

    def submitted_heads(self, wave: str) -> dict[str, str] | None:
        """lane -> the commit its claim says was submitted, where claims carry that
        (remote, after `stage_wave`); None where the ledger alone records it (local)."""
        ...

    def fragment_dir(self, wave: str, lane: str) -> Path:
        """Where a pass reads the lane's fragments (landed ones in `applied/` beside it)."""
        ...

    def integrator_lease(self, wave: str, owner: str) -> AbstractContextManager[None]:
        """Held for a whole pass: a second holder gets Contention `integrator-running`;
        remote: a lease ref, taken over only when older than stale_after."""
        ...

    def land(
        self,
        wave: str,
        new: str,
        old: str,
        events: Sequence[PendingEvent],
        lanes: Sequence[str] = (),
    ) -> Landed:
        """Move main from `old` to `new` with its record (the events, the claims of
        `lanes` marked integrated): all of it or, when someone moved main, none."""
        ...


def for_config(cfg: Config) -> Coord:
    """The coordination of this repository: local unless `remote` names a git remote (one
    that does not exist is bad configuration, exit 2). Made afresh each time: it costs
    nothing locally, one `git remote get-url` remotely."""
    if not cfg.settings.remote:
        from lanes.coord.local import LocalCoord

        return LocalCoord(cfg)
    from lanes.coord.remote import RemoteCoord

    return RemoteCoord(cfg, cfg.settings.remote)
