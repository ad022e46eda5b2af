"""The plan of a wave run (`lanes run WAVE --plan FILE`): which lanes, what runs in each.

A TOML file (docs/runner.md):

    [defaults]
    command = ["claude", "-p", "--permission-mode", "acceptEdits"]   # argv; brief on stdin
    timeout = "45m"
    grace = "10s"          # after TERM, how long before KILL
    env = { CI = "1" }

    [[lane]]
    name = "api-dim-a"
    task = "Add dimension A to the API: ..."    # or task_file = "tasks/dim-a.md"
    owns = ["src/dim_a/**"]
    env = { FEATURE = "dim-a" }                 # on top of [defaults] env
    # command, timeout, grace: override [defaults]; agent: the claim's agent id

Everything is checked before anything starts: an unknown key, a value of the wrong type or
shape, a bad lane or agent name, a lane named twice, a task file that cannot be read and
two lanes whose `owns` globs can match one path are bad input (exit 2), named by their key
(`lane[2].timeout`, counting lanes from 0 in the order of the file) with what would be right.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from lanes.config import parse_duration
from lanes.errors import BadInput
from lanes.names import check_agent, check_lane

DEFAULT_TIMEOUT = "45m"
DEFAULT_GRACE = "10s"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _duration(value: Any, zero_ok: bool) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration like 90s, 45m or 2h")
    if isinstance(value, int):
        value = str(value)  # a bare number means seconds, as in lanes.toml
    if isinstance(value, str):
        seconds = parse_duration(value)  # its ValueError says what a duration looks like
        if seconds <= 0 and not zero_ok:
            raise ValueError(f"{value!r} would stop the agent at once; use e.g. 45m")
    return value


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    command: list[str] | None = None
    timeout: str | None = None
    grace: str | None = None
    env: dict[str, str] = {}

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                f"must be an argv list like {[*value.split()][:3]!r}, not a string "
                "(nothing goes through a shell)"
            )
        if isinstance(value, list) and (not value or not all(isinstance(a, str) for a in value)):
            raise ValueError('must be a non-empty list of strings, like ["claude", "-p"]')
        if isinstance(value, list) and not value[0].strip():
            raise ValueError("its first word, the program, is empty")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return _duration(value, zero_ok=False)

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> Any:
        return _duration(value, zero_ok=True)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pydantic says it is not a table
        for key, item in value.items():
            if not _ENV_NAME.fullmatch(str(key)):
                raise ValueError(f"{key!r} is not an environment variable name, like FEATURE")
            if str(key).startswith("LANES_"):
                raise ValueError(
                    f"{key} is set by the runner (the lane's LANES_* variables); name it otherwise"
                )
            if not isinstance(item, str):
                raise ValueError(f'{key} = {item!r} must be a string (quote it: "{item}")')
        return value


class DefaultsTable(_Table):
    pass


class LaneTable(_Table):
    name: str
    task: str | None = None
    task_file: str | None = None
    owns: list[str] = []
    agent: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        try:
            return check_lane(value)
        except BadInput as exc:
            raise ValueError(f"{exc.message}: {exc.hint}") from None

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            return check_agent(value)
        except BadInput as exc:
            raise ValueError(f"{exc.message}: {exc.hint}") from None

    @field_validator("owns")
    @classmethod
    def _owns(cls, value: list[str]) -> list[str]:
        return [check_glob(v) for v in value]

    @model_validator(mode="after")
    def _one_task(self) -> LaneTable:
        if (self.task is None) == (self.task_file is None):
            raise ValueError(
                "give exactly one of task (the text) or task_file (a file, relative to the plan)"
            )
        if self.task is not None and not self.task.strip():
            raise ValueError("task is empty: say what the agent is to do")
        return self


class PlanFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    defaults: DefaultsTable = DefaultsTable()
    lane: list[LaneTable]

    @field_validator("lane", mode="before")
    @classmethod
    def _array(cls, value: Any) -> Any:
        if isinstance(value, dict):
            raise ValueError("write each lane as [[lane]] (an array of tables), not [lane]")
        if isinstance(value, list) and not value:
            raise ValueError("the plan has no lane: add a [[lane]] table")
        return value


_KNOWN = {
    (): list(PlanFile.model_fields),
    ("defaults",): list(DefaultsTable.model_fields),
    ("lane",): list(LaneTable.model_fields),
}


@dataclass(frozen=True)
class PlannedLane:
    """One lane as the runner runs it: every default applied, the task read."""

    index: int  # its place in the plan file, from 0 (lane[index] in messages)
    name: str
    task: str
    owns: tuple[str, ...]
    env: dict[str, str]  # [defaults] env, then the lane's own on top
    command: tuple[str, ...]
    timeout_seconds: int
    grace_seconds: int
    agent: str  # the claim's agent id: `agent`, or run-<name>


@dataclass(frozen=True)
class Plan:
    path: Path
    lanes: tuple[PlannedLane, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "lanes": [
                {
                    "name": pl.name,
                    "agent": pl.agent,
                    "command": list(pl.command),
                    "timeout_seconds": pl.timeout_seconds,
                    "grace_seconds": pl.grace_seconds,
                    "owns": list(pl.owns),
                }
                for pl in self.lanes
            ],
        }


def _key(loc: tuple[int | str, ...]) -> str:
    """('lane', 2, 'timeout') -> lane[2].timeout"""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _bad(message: str, hint: str = "", **extra: Any) -> BadInput:
    return BadInput(
        "bad-plan", message, hint=hint or "see docs/runner.md for the plan's keys", **extra
    )


def load(path: Path) -> Plan:
    """Read and check the plan at `path`; BadInput (`bad-plan`, exit 2) naming the key."""
    shown = str(path)
    if not path.is_file():
        raise _bad(
            f"plan {shown} is not a file" + ("" if path.exists() else " (it does not exist)"),
            hint="give --plan the path of a TOML plan (docs/runner.md shows one)",
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _bad(
            f"plan {shown} is not valid TOML (UTF-8): {exc}", hint=f"fix the syntax of {shown}"
        ) from None
    except OSError as exc:
        raise _bad(f"cannot read plan {shown}: {exc.strerror}", hint=f"check {shown}") from None
    return from_dict(raw, path)


def from_dict(raw: dict[str, Any], path: Path) -> Plan:
    try:
        parsed = PlanFile.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, raw, path) from None
    base = path.parent
    defaults = parsed.defaults
    lanes: list[PlannedLane] = []
    seen: dict[str, int] = {}
    for i, lane in enumerate(parsed.lane):
        where = f"lane[{i}]"
        if lane.name in seen:
            raise _bad(
                f"plan {path}: {where}.name: lane {lane.name!r} is also lane[{seen[lane.name]}]",
                hint="give each lane its own name (a lane is one agent's unit of work)",
                keys=[f"{where}.name"],
            )
        seen[lane.name] = i
        command = lane.command or defaults.command
        if command is None:
            raise _bad(
                f"plan {path}: {where}.command: lane {lane.name!r} has no command, and "
                "[defaults] gives none",
                hint='set command = ["claude", "-p"] in [defaults] or in the lane',
                keys=[f"{where}.command"],
            )
        task = lane.task if lane.task is not None else _read_task(path, base, where, lane)
        lanes.append(
            PlannedLane(
                index=i,
                name=lane.name,
                task=task,
                owns=tuple(lane.owns),
                env={**defaults.env, **lane.env},
                command=tuple(command),
                timeout_seconds=parse_duration(lane.timeout or defaults.timeout or DEFAULT_TIMEOUT),
                grace_seconds=parse_duration(lane.grace or defaults.grace or DEFAULT_GRACE),
                agent=lane.agent or f"run-{lane.name}",
            )
        )
    _check_owns(path, lanes)
    return Plan(path, tuple(lanes))


def _read_task(path: Path, base: Path, where: str, lane: LaneTable) -> str:
    assert lane.task_file is not None
    task_path = base / lane.task_file  # an absolute task_file stays as it is
    try:
        text = task_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise _bad(
            f"plan {path}: {where}.task_file: cannot read {task_path}: {why}",
            hint="task_file is relative to the plan file's folder; give a readable text file",
            keys=[f"{where}.task_file"],
        ) from None
    if not text.strip():
        raise _bad(
            f"plan {path}: {where}.task_file: {task_path} is empty",
            hint="write the agent's task in it",
            keys=[f"{where}.task_file"],
        )
    return text


def _validation_error(exc: ValidationError, raw: dict[str, Any], path: Path) -> BadInput:
    problems: list[str] = []
    keys: list[str] = []
    hint = ""
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _key(loc) or "(the plan)"
        name = _lane_name(raw, loc)
        if err["type"] == "extra_forbidden":
            section = tuple(p for p in loc[:-1] if not isinstance(p, int))
            known = _KNOWN.get(section, [])
            title = {(): "the plan", ("defaults",): "[defaults]", ("lane",): "[[lane]]"}.get(
                section, key
            )
            problems.append(f"unknown key {key}{name}")
            hint = hint or f"known keys in {title}: " + ", ".join(known)
        elif err["type"] == "missing":
            problems.append(f"{key}{name}: missing (it is required)")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key}{name}: {msg}")
        keys.append(key)
    return _bad(f"plan {path}: " + "; ".join(problems), hint=hint, keys=keys)


def _lane_name(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """' (lane "api")' for a key inside a [[lane]] whose name can be read, else ''."""
    if len(loc) >= 2 and loc[0] == "lane" and isinstance(loc[1], int):
        lanes = raw.get("lane")
        if isinstance(lanes, list) and loc[1] < len(lanes) and isinstance(lanes[loc[1]], dict):
            name = lanes[loc[1]].get("name")
            if isinstance(name, str) and loc[2:] != ("name",):
                return f" (lane {name!r})"
    return ""


# -- owns: globs, and whether two of them can match one path -------------------------------


def check_glob(value: str) -> str:
    """A glob of repository paths: relative, '/'-separated, without '..'."""
    parts = value.split("/")
    if (
        not value.strip()
        or value.startswith("/")
        or "\\" in value
        or ".." in parts
        or any(c in value for c in "\0\n\r")
    ):
        raise ValueError(
            f"{value!r} is not a glob of paths inside the repository, like src/dim_a/**"
        )
    return value.rstrip("/")


def _check_owns(path: Path, lanes: list[PlannedLane]) -> None:
    for i, a in enumerate(lanes):
        for b in lanes[i + 1 :]:
            for ga in a.owns:
                for gb in b.owns:
                    if globs_overlap(ga, gb):
                        raise _bad(
                            f"plan {path}: lane[{b.index}].owns: {gb!r} (lane {b.name!r}) "
                            f"overlaps {ga!r} of lane[{a.index}] ({a.name!r}): some path "
                            "would be owned by both",
                            hint="give each lane paths of its own (narrow one glob, or merge "
                            "the two lanes)",
                            keys=[f"lane[{b.index}].owns", f"lane[{a.index}].owns"],
                        )


def globs_overlap(a: str, b: str) -> bool:
    """Whether some path matches both globs, each read as owning what it matches and
    everything beneath it (`src/api` owns `src/api/x.py`).

    Decided exactly, not guessed from an example path: a glob is a sequence of segments
    ('/'-separated); a segment is `**` (any number of segments, none included) or a
    pattern of characters with `*` (any run of characters but '/'), `?` (one character)
    and `[...]` classes (`[!...]` negated); everything else is literal. Two globs overlap
    when their languages intersect, found by walking both at once (memoized over positions,
    so it is quadratic, never exponential)."""
    return _segments_meet((*_segments(a), "**"), (*_segments(b), "**"))


def _segments(glob: str) -> tuple[str, ...]:
    return tuple(part for part in glob.split("/") if part and part != ".")


def _segments_meet(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    @cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) or j == len(b):
            return all(s == "**" for s in a[i:]) and all(s == "**" for s in b[j:])
        if a[i] == "**":
            # `**` matches nothing, or takes the next segment (whatever b[j] matches)
            return meet(i + 1, j) or meet(i, j + 1)
        if b[j] == "**":
            return meet(i, j + 1) or meet(i + 1, j)
        return _patterns_meet(_tokens(a[i]), _tokens(b[j])) and meet(i + 1, j + 1)

    return meet(0, 0)


# A token: "*", "?", or a character set as (negated, ranges) with ranges [(lo, hi), ...].
_Token = str | tuple[bool, tuple[tuple[int, int], ...]]


@lru_cache(maxsize=512)
def _tokens(segment: str) -> tuple[_Token, ...]:
    out: list[_Token] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c in "*?":
            if not (c == "*" and out and out[-1] == "*"):  # ** inside a segment is *
                out.append(c)
            i += 1
            continue
        if c == "[":
            parsed = _char_class(segment, i)
            if parsed is not None:
                token, i = parsed
                out.append(token)
                continue
        out.append((False, ((ord(c), ord(c)),)))
        i += 1
    return tuple(out)


def _char_class(s: str, start: int) -> tuple[_Token, int] | None:
    """`[...]` at `start` as fnmatch reads it; None when unclosed (then '[' is literal)."""
    i = start + 1
    negated = i < len(s) and s[i] in "!^"
    if negated:
        i += 1
    ranges: list[tuple[int, int]] = []
    first = True
    while i < len(s) and (s[i] != "]" or first):
        first = False
        if i + 2 < len(s) and s[i + 1] == "-" and s[i + 2] != "]":
            lo, hi = ord(s[i]), ord(s[i + 2])
            if lo <= hi:
                ranges.append((lo, hi))
            i += 3
        else:
            ranges.append((ord(s[i]), ord(s[i])))
            i += 1
    if i >= len(s):
        return None
    return (negated, tuple(ranges)), i + 1


_SLASH = ord("/")


def _chars_meet(x: _Token, y: _Token) -> bool:
    """Whether one character (never '/') is matched by both single-character tokens."""
    if x == "?" and y == "?":
        return True
    if x == "?":
        x, y = y, x
    if y == "?":
        assert not isinstance(x, str)
        return _some_char(x, (True, ((_SLASH, _SLASH),)))
    assert not isinstance(x, str) and not isinstance(y, str)
    return _some_char(x, y, (True, ((_SLASH, _SLASH),)))


def _some_char(*sets: tuple[bool, tuple[tuple[int, int], ...]]) -> bool:
    """Whether a character lies in every set (a negated set: outside its ranges)."""
    positive = [ranges for negated, ranges in sets if not negated]
    negative = [rng for negated, ranges in sets if negated for rng in ranges]
    # The smallest character in all sets, if there is one, is 0, the start of a positive
    # range, or the character just past a negative range: trying those decides it.
    candidates = {0} | {lo for ranges in positive for lo, _ in ranges}
    candidates |= {hi + 1 for _, hi in negative}
    return any(
        c <= 0x10FFFF
        and all(any(lo <= c <= hi for lo, hi in ranges) for ranges in positive)
        and not any(lo <= c <= hi for lo, hi in negative)
        for c in candidates
    )


def _patterns_meet(a: tuple[_Token, ...], b: tuple[_Token, ...]) -> bool:
    @cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) or j == len(b):
            return all(t == "*" for t in a[i:]) and all(t == "*" for t in b[j:])
        x, y = a[i], b[j]
        if x == "*" and y == "*":
            return meet(i + 1, j) or meet(i, j + 1)
        if x == "*":  # the star matches nothing more, or also the character y matches
            return meet(i + 1, j) or (_chars_meet(y, "?") and meet(i, j + 1))
        if y == "*":
            return meet(i, j + 1) or (_chars_meet(x, "?") and meet(i + 1, j))
        return _chars_meet(x, y) and meet(i + 1, j + 1)

    return meet(0, 0)


__all__ = ["Plan", "PlannedLane", "globs_overlap", "load"]
