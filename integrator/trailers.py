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

WAVE = "Lanes-Wave"
LANE = "Lanes-Lane"
FRAGMENTS = "Lanes-Fragments"
VERSION_BUMP = "Lanes-Version-Bump"


def format_trailers(pairs: list[tuple[str, str]]) -> str:
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
