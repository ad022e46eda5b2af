"""Version files: read and set the one version field, byte for byte elsewhere.

pyproject.toml: `[project].version` (or `[tool.poetry].version`), through tomlkit, which
keeps the rest of the document as it was. JSON (server.json, package.json): the top-level
"version" member, located by walking the document with the json module's own scanner and
replaced in place, so a look-alike string anywhere else (a description, a nested
"version") is never touched. Every function checks its own result before returning it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from lanes.errors import BadInput, Refused
from lanes.surfaces.base import FragmentModel

KIND = "version"
INSTEAD = (
    "lanes fragment version major|minor|patch for a version change; any other edit of this "
    "file: ask the operator"
)
BUMPS = ("patch", "minor", "major")  # in increasing order
_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
RANK = {bump: i for i, bump in enumerate(BUMPS)}  # patch < minor < major


class VersionFragment(FragmentModel):
    kind: Literal["version"] = "version"
    bump: Literal["major", "minor", "patch"]


def fragment(bump: str) -> VersionFragment:
    if bump not in BUMPS:
        raise BadInput(
            "bad-bump", f"{bump!r} is not a version bump", hint="use one of: major, minor, patch"
        )
    return VersionFragment.model_validate({"bump": bump})


def largest(bumps: Sequence[str]) -> str | None:
    return max(bumps, key=RANK.__getitem__) if bumps else None


def bumped(version: str, bump: str) -> str:
    """0.3.5 + minor -> 0.4.0. Only plain X.Y.Z versions can be bumped."""
    match = _SEMVER.fullmatch(version)
    if not match:
        raise BadInput(
            "bad-version",
            f"version {version!r} is not X.Y.Z",
            hint="set a plain semantic version (like 0.3.5) in every version file",
        )
    major, minor, patch = (int(g) for g in match.groups())
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    if bump == "patch":
        return f"{major}.{minor}.{patch + 1}"
    raise BadInput("bad-bump", f"{bump!r} is not a version bump", hint="major, minor or patch")


_DUNDER_VERSION = re.compile(r"^__version__\s*(?::\s*str\s*)?=", re.MULTILINE)


def declares_version(name: str, text: str) -> bool:
    """Whether a Python module assigns `__version__` at the top level."""
    return bool(_DUNDER_VERSION.search(text))


def _is_toml(name: str) -> bool:
    return name.endswith(".toml")


def read(name: str, text: str) -> str:
    """The version a file carries."""
    if _is_toml(name):
        item, _ = _toml_field(name, text)
        return str(item)
    start, end = _json_span(name, text)
    value = json.loads(text[start:end])
    if not isinstance(value, str):
        raise _unreadable(name, 'its top-level "version" is not a string')
    return value


def write(name: str, text: str, new: str) -> str:
    """`text` with its version field set to `new`, every other byte unchanged."""
    if _is_toml(name):
        result = _write_toml(name, text, new)
    else:
        start, end = _json_span(name, text)
        result = text[:start] + json.dumps(new) + text[end:]
    if read(name, result) != new or not _only_field_changed(name, text, result):
        raise _unreadable(name, "setting the version would change more than its field")
    return result


def common(files: dict[str, str]) -> str:
    """The one version all files carry; refused when they disagree."""
    found = {name: read(name, text) for name, text in files.items()}
    if len(set(found.values())) > 1:
        listing = ", ".join(f"{n} has {v}" for n, v in found.items())
        raise Refused(
            "version-mismatch",
            f"the version files disagree: {listing}",
            hint="make them carry the same version on main (one commit by hand), then rerun",
            versions=found,
        )
    return next(iter(found.values()))


def bump_files(files: dict[str, str], bump: str) -> tuple[str, str, dict[str, str]]:
    """(old, new, new texts): every file moved from the common version by `bump`."""
    old = common(files)
    new = bumped(old, bump)
    return old, new, {name: write(name, text, new) for name, text in files.items()}


def set_files(files: dict[str, str], new: str) -> dict[str, str]:
    """Every file set to `new` (idempotent: a file already at `new` comes back unchanged)."""
    common(files)
    return {name: write(name, text, new) for name, text in files.items()}


# -- TOML ------------------------------------------------------------------------------


def _toml_field(name: str, text: str) -> tuple[Any, Any]:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise _unreadable(name, f"it is not valid TOML ({exc})") from None
    project = doc.get("project")
    if isinstance(project, dict) and "version" in project:
        return project["version"], project
    poetry = doc.get("tool", {}).get("poetry")
    if isinstance(poetry, dict) and "version" in poetry:
        return poetry["version"], poetry
    raise _unreadable(name, "it has neither [project].version nor [tool.poetry].version")


def _write_toml(name: str, text: str, new: str) -> str:
    import tomlkit
    from tomlkit.items import String, StringType

    doc = tomlkit.parse(text)
    project = doc.get("project")
    table = project if isinstance(project, dict) and "version" in project else None
    if table is None:
        table = doc["tool"]["poetry"]  # _toml_field (through read) has checked it exists
    old = table["version"]
    literal = isinstance(old, String) and old.type in (StringType.SLL, StringType.MLL)
    table["version"] = tomlkit.string(new, literal=literal)  # tomlkit keeps the comment
    return tomlkit.dumps(doc)


# -- JSON ------------------------------------------------------------------------------


def _json_span(name: str, text: str) -> tuple[int, int]:
    """Where the top-level "version" value sits in `text` (start, end)."""
    from json.decoder import scanstring  # type: ignore[attr-defined]

    decoder = json.JSONDecoder()
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        raise _unreadable(name, "it is not a JSON object")
    i = _skip(text, i + 1)
    span: tuple[int, int] | None = None
    try:
        while text[i] != "}":
            if text[i] != '"':
                raise ValueError(f"expected a member name at offset {i}")
            key, i = scanstring(text, i + 1)
            i = _skip(text, i)
            if text[i] != ":":
                raise ValueError(f"expected ':' at offset {i}")
            start = _skip(text, i + 1)
            _, end = decoder.raw_decode(text, start)
            if key == "version":
                if span is not None:
                    raise ValueError('"version" appears twice at the top level')
                span = (start, end)
            i = _skip(text, end)
            if text[i] == ",":
                i = _skip(text, i + 1)
                if text[i] != '"':
                    raise ValueError(f"expected a member name after ',' at offset {i}")
            elif text[i] != "}":
                raise ValueError(f"expected ',' or '}}' at offset {i}")
        if text[_skip(text, i + 1) :].strip():
            raise ValueError("there is text after the object")
    except (ValueError, IndexError) as exc:
        raise _unreadable(name, f"it is not valid JSON ({exc})") from None
    if span is None:
        raise _unreadable(name, 'it has no top-level "version" member')
    return span


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _only_field_changed(name: str, before: str, after: str) -> bool:
    """True when `after` differs from `before` in the version field and nowhere else."""
    if _is_toml(name):
        a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
        return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) <= 1
    s1, e1 = _json_span(name, before)
    s2, e2 = _json_span(name, after)
    return before[:s1] == after[:s2] and before[e1:] == after[e2:]


def _unreadable(name: str, why: str) -> BadInput:
    return BadInput(
        "bad-version-file",
        f"cannot read the version of {name}: {why}",
        hint="fix the file on main, or list only real version files in [version].files",
        file=name,
    )
