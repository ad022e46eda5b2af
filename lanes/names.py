"""What a wave, lane, agent and manifest entry may be called (SPEC.md, 'Words')."""

from __future__ import annotations

import re

from lanes.errors import BadInput

# SPEC's rule, less what git refuses in a branch name (lanes/<wave>/<lane>): a component
# may not end in '.' or '.lock' (git check-ref-format). See docs/decisions.md.
_WAVE_OR_LANE = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
_WAVE_OR_LANE_RULE = (
    "matches ^[a-z0-9][a-z0-9._-]{0,39}$ without '..' and does not end in '.' or '.lock' "
    "(git refuses them in the branch lanes/<wave>/<lane>)"
)
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# A manifest entry is a plain file name: no directory part, no hidden or relative names.
_ENTRY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def _check(kind: str, value: str, valid: bool, rule: str) -> str:
    if not valid:
        article = "an" if kind[0] in "aeiou" else "a"
        raise BadInput(
            f"bad-{kind}", f"invalid {kind} name {value!r}", hint=f"{article} {kind} name {rule}"
        )
    return value


def _branch_part(kind: str, value: str) -> str:
    valid = (
        _WAVE_OR_LANE.fullmatch(value) is not None
        and ".." not in value
        and not value.endswith((".", ".lock"))
    )
    return _check(kind, value, valid, _WAVE_OR_LANE_RULE)


def check_wave(value: str) -> str:
    return _branch_part("wave", value)


def check_lane(value: str) -> str:
    return _branch_part("lane", value)


def check_agent(value: str) -> str:
    # '..' is allowed: an agent id never names a path or a branch.
    valid = _AGENT.fullmatch(value) is not None
    return _check("agent", value, valid, "matches ^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def check_entry(value: str) -> str:
    return _check(
        "entry",
        value,
        _ENTRY.fullmatch(value) is not None and ".." not in value,
        "is a plain file name such as 261_legal_chain_v2.sql: letters, digits, '.', '_' and "
        "'-', a letter or digit first, at most 200 characters, no '..'",
    )
