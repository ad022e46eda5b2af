"""What is integrated, read from `main` itself: the trailers on the commits the pass made.

Each landed lane's commits carry, on the last one:
    Lanes-Wave: 44
    Lanes-Lane: api-dim-a
    Lanes-Fragments: <fragment file names, comma-separated, or "none">
and the pass's version bump commit carries:
    Lanes-Wave: 44
    Lanes-Version-Bump: minor 0.3.5 -> 0.4.0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WAVE = "Lanes-Wave"
LANE = "Lanes-Lane"
FRAGMENTS = "Lanes-Fragments"
VERSION_BUMP = "Lanes-Version-Bump"


def format_trailers(pairs: list[tuple[str, str]]) -> str:
    """The trailer block. Every value was validated where it was read (names by
    lanes.names, fragment names by lanes.fragments.check_name); a line break here would
    forge a trailer, so one is a bug and stops the pass before it writes anything."""
    for key, value in pairs:
        if any(c in value for c in "\r\n\x00") or not value.strip():
            raise ValueError(f"refusing to write the trailer {key}: {value!r}")
    return "\n".join(f"{key}: {value}" for key, value in pairs)


def parse_trailers(message: str) -> dict[str, str]:
    """The trailer block: the last paragraph of the message, `Key: value` lines."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if not paragraphs:
        return {}
    found: dict[str, str] = {}
    for line in paragraphs[-1].splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.startswith("Lanes-"):
            found[key] = value.strip()
    return found


@dataclass(frozen=True)
class Landed:
    sha: str
    wave: str
    lane: str | None
    fragments: list[str]
    version_bump: str | None


def landed(repo: Path, ref: str, wave: str) -> list[Landed]:
    """Every commit on `ref` the pass made for `wave`, newest first."""
    from lanes import git

    pattern = f"^{WAVE}: {wave.replace('.', '[.]')}$"
    found = []
    for sha, message in git.log_grep(repo, ref, pattern):
        pairs = parse_trailers(message)
        if pairs.get(WAVE) != wave:
            continue
        names = pairs.get(FRAGMENTS, "none")
        found.append(
            Landed(
                sha,
                wave,
                pairs.get(LANE),
                [] if names in ("", "none") else [n.strip() for n in names.split(",")],
                pairs.get(VERSION_BUMP),
            )
        )
    return found


def parse_bump(value: str) -> tuple[str, str, str]:
    """'minor 0.3.5 -> 0.4.0' -> ('minor', '0.3.5', '0.4.0')."""
    bump, old, _, new = value.split()
    return bump, old, new


def lane_message(wave: str, lane: str, fragment_names: list[str], summary: list[str]) -> str:
    body = "\n".join(f"- {line}" for line in summary) or "- no fragments"
    return (
        f"lanes: land {wave}/{lane}\n\n{body}\n\n"
        + format_trailers(
            [(WAVE, wave), (LANE, lane), (FRAGMENTS, ",".join(fragment_names) or "none")]
        )
        + "\n"
    )


def bump_message(wave: str, bump: str, old: str, new: str) -> str:
    return (
        f"lanes: version {old} -> {new} (wave {wave}, {bump})\n\n"
        + format_trailers([(WAVE, wave), (VERSION_BUMP, f"{bump} {old} -> {new}")])
        + "\n"
    )
