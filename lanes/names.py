"""What a wave, lane, agent and manifest entry may be called (SPEC.md, 'Words')."""

from __future__ import annotations

import re

from lanes.errors import BadInput

_WAVE_OR_LANE = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# A manifest entry is a plain file name: no directory part, no hidden or relative names.
_ENTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _check(
    kind: str, value: str, pattern: re.Pattern[str], rule: str, *, dots: bool = False
) -> str:
    """`dots`: whether '..' may appear (only in agent ids, which never name a path)."""
    if not pattern.fullmatch(value) or (".." in value and not dots):
        article = "an" if kind[0] in "aeiou" else "a"
        raise BadInput(
            f"bad-{kind}",
            f"invalid {kind} name {value!r}",
            hint=f"{article} {kind} name {rule}",
        )
    return value


def check_wave(value: str) -> str:
    return _check("wave", value, _WAVE_OR_LANE, "matches ^[a-z0-9][a-z0-9._-]{0,39}$ without '..'")


def check_lane(value: str) -> str:
    return _check("lane", value, _WAVE_OR_LANE, "matches ^[a-z0-9][a-z0-9._-]{0,39}$ without '..'")


def check_agent(value: str) -> str:
    return _check("agent", value, _AGENT, "matches ^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", dots=True)


def check_entry(value: str) -> str:
    return _check(
        "entry",
        value,
        _ENTRY,
        "is a plain file name such as 261_legal_chain_v2.sql (no '/', no '..', no leading dot)",
    )
