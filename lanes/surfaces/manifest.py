"""The boot manifest: one migration file name per line, comments kept where they are.

Pure text in, text out. An entry is added once (an entry already present is left alone),
at its place in migration order: after the last entry that sorts at or before it, where
entries sort by their numeric prefix, then by name. Every other line (comments, blank
lines, entries already there, their order) stays byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from pydantic import Field, model_validator

from lanes.errors import BadInput
from lanes.names import check_entry
from lanes.surfaces.base import FragmentModel

KIND = "manifest"
INSTEAD = "lanes fragment manifest ENTRY..."
_NUMBER = re.compile(r"(\d+)")


def entry_of(line: str) -> str | None:
    """The entry a line names, or None for a comment or a blank line (a UTF-8 byte order
    mark before the first line is not part of it)."""
    entry = line.lstrip("\ufeff").split("#", 1)[0].strip()
    return entry or None


def entries(text: str) -> list[str]:
    return [e for e in (entry_of(line) for line in text.splitlines()) if e is not None]


def order_key(entry: str) -> tuple[int, int, str]:
    """Migration order: numbered entries by number (261 after 90), then the rest by name."""
    match = _NUMBER.match(entry)
    return (0, int(match.group(1)), entry) if match else (1, 0, entry)


def add_entries(text: str, new: Iterable[str]) -> str:
    """`text` with each entry of `new` not already present inserted in migration order."""
    if text.startswith("\ufeff"):  # the byte order mark stays first, whatever goes before
        return "\ufeff" + add_entries(text[1:], new)
    lines = text.splitlines(keepends=True)
    present = set(entries(text))
    newline = "\r\n" if "\r\n" in text else "\n"
    for entry in sorted(set(new) - present, key=order_key):
        lines = _insert(lines, entry, newline)
    return "".join(lines)


def _insert(lines: list[str], entry: str, newline: str) -> list[str]:
    key = order_key(entry)
    first_entry: int | None = None
    after: int | None = None
    for i, line in enumerate(lines):
        name = entry_of(line)
        if name is None:
            continue
        if first_entry is None:
            first_entry = i
        if order_key(name) <= key:
            after = i
    if after is not None:
        at = after + 1
    elif first_entry is not None:
        at = first_entry
    else:
        at = len(lines)
    out = list(lines)
    if at > 0 and not out[at - 1].endswith("\n"):
        out[at - 1] += newline  # the line before had no end: give it one, change nothing else
    out.insert(at, entry + newline)
    return out


# -- the fragment ----------------------------------------------------------------------


class ManifestFragment(FragmentModel):
    kind: Literal["manifest"] = "manifest"
    entries: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _plain_names(self) -> ManifestFragment:
        for entry in self.entries:
            try:
                check_entry(entry)
            except BadInput as exc:  # as a ValueError, pydantic names the field and file
                raise ValueError(exc.message) from None
        return self


def fragment(entries: list[str]) -> ManifestFragment:
    for entry in entries:
        check_entry(entry)
    if not entries:
        raise BadInput(
            "bad-fragment",
            "no manifest entries given",
            hint="lanes fragment manifest 261_legal_chain_v2.sql",
        )
    return ManifestFragment(entries=entries)
