"""Version files: read and set the one version field, byte for byte elsewhere.

The file's name says where its version is written; one function per kind of file locates it
(its span in the text, a BOM set aside), and one read and one write serve them all:

- pyproject.toml (any other `.toml`): `[project].version`, else `[tool.poetry].version`;
- Cargo.toml: `[package].version`, or `[workspace.package].version`; both TOML files are
  located through tomlkit, which writes a marker in the field and nowhere else;
- setup.cfg: `version = X` under `[metadata]`, checked against configparser as setuptools
  reads it;
- build.gradle(.kts): the one `version = "X"` (Groovy: `version "X"`) line that starts outside
  any block, string or comment;
- `*.py`: the one top-level `__version__ = "X"`, located with `ast`;
- `*.json`: the top-level "version" member, located with the json module's own scanner.

A version written elsewhere (dynamic, inherited, computed, imported, assigned twice) is
unreadable, with the reason; a look-alike (a comment, a description, a nested "version", an
indented one) is never read nor touched. `write` checks its own result before returning it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from lanes.errors import BadInput, Refused
from lanes.surfaces.base import FragmentModel
from lanes.surfaces.version_formats import Field, locate, unreadable

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


_DUNDER_VERSION = re.compile(r"^\ufeff?__version__[ \t]*(?::[^=\r\n]*)?=(?!=)", re.MULTILINE)


def declares_version(name: str, text: str) -> bool:
    """Whether a Python module assigns `__version__` at the start of a line."""
    return bool(_DUNDER_VERSION.search(text))


# -- one read and one write for every kind of file -------------------------------------


def read(name: str, text: str) -> str:
    """The version a file carries."""
    return locate(name, _without_bom(text)).value


def write(name: str, text: str, new: str) -> str:
    """`text` with its version field set to `new`, every other byte unchanged."""
    bom = _BOM if text.startswith(_BOM) else ""
    body = text[len(bom) :]
    field = locate(name, body)
    result = body[: field.start] + field.render(new) + body[field.end :]
    if not _only_field_changed(body, field, result, locate(name, result), new):
        raise unreadable(name, "setting the version would change more than its field")
    return bom + result


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


_BOM = "\ufeff"


def _without_bom(text: str) -> str:
    return text[1:] if text.startswith(_BOM) else text


def _only_field_changed(before: str, field: Field, after: str, found: Field, new: str) -> bool:
    """True when `after` carries `new` and differs from `before` in the field and nowhere else."""
    return (
        found.value == new
        and after[: found.start] == before[: field.start]
        and after[found.end :] == before[field.end :]
    )
