"""The deploy workflow: JSON Patch (RFC 6902) applied to the round-trip YAML document.

ruamel.yaml's round-trip mode keeps comments, but its emitter still normalises a few
things (indentation it guessed wrong, spacing before a comment, a blank line here and
there). So the edit is done in three steps, and the file's own bytes win everywhere the
patch did not reach:
  1. load the text (indentation detected from the file) and dump it unchanged: D0;
  2. apply the operations to the loaded document and dump it: D1;
  3. three-way merge by lines, base D0, ours the original text, theirs D1: the lines the
     patch changed (D0 -> D1) are spliced into the original; every other line is kept as
     the file had it, even where ruamel would have written it differently.
The result is loaded again and must equal the patched document, else the plain D1 is used
(correct, only less faithful in its formatting).
"""

from __future__ import annotations

import copy
import difflib
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from lanes.errors import BadInput
from lanes.surfaces.base import FragmentModel, first_error

KIND = "deploy"
INSTEAD = "lanes fragment deploy PATCH_FILE"
PATCH_FILE_LIMIT = 1 << 20  # bytes
MAX_DEPTH = 32  # nesting of a patch's values: a workflow is a few levels deep
_INT_LIMIT = 1 << 63  # JSON numbers a YAML emitter and every reader agree on
# C0 controls (but tab, newline, carriage return), DEL, and lone surrogates: text that no
# workflow needs, that YAML writes as escapes or cannot write at all, and that breaks a
# pointer (a NUL in one blocked every pass of its wave).
_BAD_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")

# (mapping indent, sequence indent, dash offset) tried when the file's own cannot be read.
_INDENTS = ((2, 4, 2), (2, 2, 0), (4, 6, 4), (4, 4, 2), (4, 4, 0), (2, 4, 0), (3, 5, 3))


class PatchOp(FragmentModel):
    """One RFC 6902 operation."""

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str
    value: Any = None
    from_: str | None = Field(default=None, alias="from")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _required_members(cls, data: Any) -> Any:
        if isinstance(data, dict):
            op = data.get("op")
            if op in ("add", "replace", "test") and "value" not in data:
                raise ValueError(f"a {op!r} operation needs a 'value'")
            if op in ("move", "copy") and "from" not in data:
                raise ValueError(f"a {op!r} operation needs a 'from'")
        return data

    @model_validator(mode="after")
    def _pointers(self) -> PatchOp:
        # The same checks at the door (fragment deploy) and on every read back from disk
        # (submit, the pass): a fragment file edited by hand is judged like a dropped one.
        problem = sane(self.value, "value")
        if problem:
            raise ValueError(problem)
        for pointer in (self.path, self.from_):
            if pointer is not None and (bad := _BAD_TEXT.search(pointer)):
                raise ValueError(
                    f"the pointer {pointer!r} holds the character {bad.group()!r}, which no "
                    "workflow key needs"
                )
            if pointer is not None and pointer != "" and not pointer.startswith("/"):
                raise ValueError(f"{pointer!r} is not a JSON Pointer (it must start with '/')")
            if pointer and re.search("~(?![01])", pointer):
                raise ValueError(
                    f"{pointer!r} is not a JSON Pointer: '~' must be written '~0' and '/' "
                    "inside a name '~1'"
                )
        return self

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op in ("add", "replace", "test"):
            doc["value"] = self.value
        if self.from_ is not None:
            doc["from"] = self.from_
        return doc


class DeployFragment(FragmentModel):
    kind: Literal["deploy"] = "deploy"
    patch: list[PatchOp] = Field(min_length=1)
    source: str = ""  # the file name it was read from, for people


def parse_patch_file(path: Path) -> DeployFragment:
    """Read a JSON Patch written in JSON or YAML; refuse anything else with exit 2."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    if path.is_file() and path.stat().st_size > PATCH_FILE_LIMIT:
        raise BadInput(
            "bad-fragment",
            f"{path} is {path.stat().st_size:,} bytes: a patch file is at most "
            f"{PATCH_FILE_LIMIT:,}",
            hint="a deploy patch is a short list of operations",
        )
    if path.exists() and not path.is_file():  # /dev/zero, a FIFO, a folder
        raise BadInput(
            "bad-fragment",
            f"{path} is not a regular file",
            hint="give the path of a JSON Patch file",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(
            "bad-fragment",
            f"cannot read {path}: {exc.strerror}",
            hint="give the path of a JSON Patch file",
        ) from exc
    except UnicodeDecodeError:
        raise BadInput(
            "bad-fragment",
            f"{path} is not UTF-8 text",
            hint="write the patch as a JSON or YAML file in UTF-8",
        ) from None
    try:
        _no_anchors(path, text)
        doc = YAML(typ="safe", pure=True).load(text)
    except RecursionError:
        raise BadInput(
            "bad-fragment",
            f"{path} nests too deeply to be a JSON Patch",
            hint="write the patch as a flat list of operations",
        ) from None
    except YAMLError as exc:
        raise BadInput(
            "bad-fragment",
            f"{path} is neither JSON nor YAML: {exc}",
            hint="write the patch as a JSON or YAML list of operations",
        ) from exc
    except ValueError as exc:  # Python refuses to make an integer of thousands of digits
        raise BadInput(
            "bad-fragment",
            f"{path} holds a value lanes cannot read: {exc}",
            hint="numbers in a patch fit in 64 bits; quote anything longer",
        ) from None
    if not isinstance(doc, list):
        raise BadInput(
            "bad-fragment",
            f"{path} is not a JSON Patch: the document must be a list of operations",
            hint='e.g. [{"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"}]',
        )
    problem = sane(doc, "")
    if problem:
        raise BadInput(
            "bad-fragment",
            f"{path} is not a JSON Patch: {problem}",
            hint="a patch holds only what JSON can: strings, numbers, true/false, null, "
            "lists and string-keyed mappings; quote dates and other YAML-only values",
        )
    try:
        return DeployFragment(patch=[PatchOp.model_validate(op) for op in doc], source=path.name)
    except ValidationError as exc:
        raise BadInput(
            "bad-fragment",
            f"{path} is not a valid JSON Patch (RFC 6902): " + first_error(exc),
            hint="each operation needs op (add, remove, replace, move, copy, test), "
            "a path starting with '/', and value or from as its op requires",
        ) from None


def _no_anchors(path: Path, text: str) -> None:
    """Refuse YAML anchors and aliases before anything is built from them: a patch never
    needs one, and a few hundred bytes of nested aliases expand to gigabytes."""
    from ruamel.yaml import YAML
    from ruamel.yaml.events import AliasEvent

    for event in YAML(typ="safe", pure=True).parse(text):  # events only: nothing expands
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None):
            raise BadInput(
                "bad-fragment",
                f"{path} uses a YAML anchor or alias (&name / *name): a JSON Patch is plain data",
                hint="write every value out where it is used",
            )


def sane(node: Any, where: str, depth: int = 0) -> str:
    """What in a patch's data JSON cannot hold or lanes will not carry ('' when nothing):
    dates, sets, binary, non-string keys, NaN and infinities, integers past 64 bits,
    control characters and lone surrogates in text, nesting past MAX_DEPTH."""
    at = where or "/"
    if depth > MAX_DEPTH:
        return f"it nests deeper than {MAX_DEPTH} levels (at {at})"
    if node is None or isinstance(node, bool):
        return ""
    if isinstance(node, int):
        return "" if -_INT_LIMIT < node < _INT_LIMIT else f"the number at {at} is too large"
    if isinstance(node, str):
        bad = _BAD_TEXT.search(node)
        return f"the text at {at} holds the character {bad.group()!r}" if bad else ""
    if isinstance(node, float):
        return "" if math.isfinite(node) else f"{node} at {at} is not a JSON number"
    if isinstance(node, list):
        return next(
            (p for i, item in enumerate(node) if (p := sane(item, f"{where}/{i}", depth + 1))),
            "",
        )
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return f"the key {key!r} at {at} is not a string"
            if problem := sane(key, f"{where} (a key)", depth + 1) or sane(
                value, f"{where}/{key}", depth + 1
            ):
                return problem
        return ""
    return f"{type(node).__name__} value {node!r} at {at} has no JSON form"


class PatchError(BadInput):
    """A patch that does not apply to the document: the lane's fragment is bad."""

    def __init__(self, message: str) -> None:
        super().__init__(
            "bad-fragment",
            message,
            hint="rewrite the JSON Patch against the workflow as it is on main",
        )


def apply(text: str, ops: Sequence[PatchOp]) -> str:
    """`text` with the operations applied, every untouched line byte for byte."""
    if not ops:
        return text
    if "\r\n" in text and text.count("\r\n") == text.count("\n"):
        # A Windows-style file: the emitter writes LF, so patch it as LF and convert back.
        return apply(text.replace("\r\n", "\n"), ops).replace("\n", "\r\n")
    yaml, doc = _load(text)
    base = _dump(yaml, doc)
    doc = _apply_ops(doc, ops)
    patched = _dump(yaml, doc)
    # Where the file's own formatting next to a change does not fit the emitter's (an
    # added member among siblings indented differently), widen the emitter's reach
    # step by step; the first merge that means what the patch means wins.
    for reach in (0, 1, 2, 4, 8, 16):
        merged = _merge(base, text, patched, reach)
        if _same(merged, patched):
            return merged
    return patched


# -- which paths an operation touches (for conflicts between lanes) ---------------------


def touched(op: PatchOp) -> list[str]:
    """The pointers an operation changes; a `test` changes nothing."""
    if op.op == "test":
        return []
    if op.op == "move" and op.from_ is not None:
        return [op.from_, op.path]
    return [op.path]


def conflict(a: PatchOp, b: PatchOp) -> bool:
    """Whether two lanes' operations cannot both be applied as each lane meant them: they
    change the same place, or one shifts the list elements the other names by index."""
    if any(overlap(x, y) for x in touched(a) for y in touched(b)):
        return True
    return _shifts(a, b) or _shifts(b, a)


def _shifts(a: PatchOp, b: PatchOp) -> bool:
    """`a` inserts into or removes from a list at an index, and `b` names an element of
    that list by index (a `test` included): after `a`, `b`'s index means another element."""
    if a.op not in ("add", "copy", "remove", "move"):
        return False
    # A copy inserts at its path and leaves its source; a move takes from one, puts at one.
    for pointer in (a.path, a.from_ if a.op == "move" else None):
        if not pointer:
            continue
        *container, last = tokens(pointer)
        if not last.isdigit():
            continue  # a mapping key, or an append (`-`) that moves no element
        for other in (b.path, b.from_):
            named = tokens(other) if other else []
            inside, rest = named[: len(container)], named[len(container) :]
            if inside == container and rest and rest[0].isdigit():
                return True
    return False


def overlap(a: str, b: str) -> bool:
    """Two pointers overlap when one is the other or inside it. Two appends to the same
    list (`.../-`) do not overlap: both elements land, in submission order."""
    ta, tb = tokens(a), tokens(b)
    n = min(len(ta), len(tb))
    if ta[:n] != tb[:n]:
        return False
    return not (len(ta) == len(tb) and ta and ta[-1] == "-")


def tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


# -- the document ----------------------------------------------------------------------


def _yaml(indent: tuple[int, int, int]) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    mapping, sequence, offset = indent
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _load(text: str) -> tuple[Any, Any]:
    from ruamel.yaml.error import YAMLError

    best: tuple[int, Any, Any] | None = None
    for indent in _candidates(text):
        yaml = _yaml(indent)
        try:
            doc = yaml.load(text)
        except YAMLError as exc:
            raise PatchError(f"the deploy workflow is not valid YAML: {exc}") from None
        differing = _differing_lines(text, _dump(yaml, doc))
        if best is None or differing < best[0]:
            best = (differing, yaml, doc)
        if differing == 0:
            break
    assert best is not None
    return best[1], best[2]


def _candidates(text: str) -> list[tuple[int, int, int]]:
    """The file's own indentation first (read from its first nested key and list), then
    the common styles."""
    mapping = sequence = offset = None
    prev_indent, prev_opens = 0, False
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if prev_opens and indent > prev_indent:
            if stripped.startswith("- ") and offset is None:
                offset = indent - prev_indent
                rest = stripped[1:]
                sequence = offset + 1 + len(rest) - len(rest.lstrip(" "))
            elif not stripped.startswith("-") and mapping is None:
                mapping = indent - prev_indent
        prev_indent = indent
        prev_opens = stripped.rstrip().endswith(":") or bool(re.search(r":\s+#", stripped))
    own = (mapping or 2, sequence or (offset or 0) + 2, offset or 0)
    return [own, *(c for c in _INDENTS if c != own)]


def _dump(yaml: Any, doc: Any) -> str:
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()


def _differing_lines(a: str, b: str) -> int:
    matcher = difflib.SequenceMatcher(None, a.splitlines(), b.splitlines(), autojunk=False)
    return max(len(a.splitlines()), len(b.splitlines())) - sum(
        m.size for m in matcher.get_matching_blocks()
    )


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _same(text: str, expected: str) -> bool:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        safe = YAML(typ="safe", pure=True)
        return bool(_plain(safe.load(text)) == _plain(safe.load(expected)))
    except YAMLError:
        return False


# -- RFC 6902 --------------------------------------------------------------------------


def _apply_ops(doc: Any, ops: Sequence[PatchOp]) -> Any:
    for op in ops:
        for pointer in (op.path, op.from_):
            if pointer is not None:
                _not_shared(doc, pointer)
        doc = _apply_op(doc, op)
    return doc


def _not_shared(doc: Any, pointer: str) -> None:
    """Refuse a pointer that goes through a node the workflow shares by a YAML anchor
    (`&x` ... `*x`, or a merge `<<: *x`): changing it under one path would change it under
    every other, which is not what the patch says."""
    shared = _shared_nodes(doc)
    node = doc
    for token in ["", *tokens(pointer)]:
        if token:
            if not isinstance(node, dict | list):
                return  # the operation itself reports the bad pointer
            try:
                node = _child(node, token, pointer)
            except PatchError:
                return
        if id(node) in shared or getattr(node, "merge", None):
            raise PatchError(
                f"{pointer} goes through a part of the workflow shared by a YAML anchor "
                "(&name / *name / <<:): a change there would also change the other places "
                "that use it; ask the operator to write the anchor out, or patch elsewhere"
            )


def _shared_nodes(doc: Any) -> set[int]:
    """ids of the mappings and lists reached by more than one path (anchored ones)."""
    seen: set[int] = set()
    shared: set[int] = set()
    stack = [doc]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict | list):
            continue
        if id(node) in seen:
            shared.add(id(node))
            continue
        seen.add(id(node))
        stack.extend(node.values() if isinstance(node, dict) else node)
    return shared


def _apply_op(doc: Any, op: PatchOp) -> Any:
    if op.op == "test":
        if _plain(_get(doc, op.path)) != _plain(op.value):
            raise PatchError(f"test failed: {op.path} is not {op.value!r}")
        return doc
    if op.op == "remove":
        return _remove(doc, op.path)
    if op.op == "replace":
        return _replace(doc, op.path, _quoted(op.value))
    if op.op == "add":
        return _add(doc, op.path, _quoted(op.value))
    source = op.from_ or ""
    value = copy.deepcopy(_get(doc, source))
    if op.op == "move":
        if tokens(op.path)[: len(tokens(source))] == tokens(source) and op.path != source:
            raise PatchError(f"cannot move {source} into its own child {op.path}")
        doc = _remove(doc, source)
    return _add(doc, op.path, value)


# Strings a YAML 1.1 reader (yamllint, PyYAML, older tools) takes for booleans; ruamel
# writes YAML 1.2, where they are plain strings, so it would leave them unquoted.
_YAML11_BOOLEANS = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF")


def _quoted(value: Any) -> Any:
    """A copy of a patch value whose strings every YAML reader reads back as strings."""
    from ruamel.yaml.scalarstring import SingleQuotedScalarString

    if isinstance(value, str):
        return SingleQuotedScalarString(value) if _YAML11_BOOLEANS.fullmatch(value) else value
    if isinstance(value, list):
        return [_quoted(v) for v in value]
    if isinstance(value, dict):
        return {k: _quoted(v) for k, v in value.items()}
    return copy.deepcopy(value)


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for token in tokens(pointer):
        node = _child(node, token, pointer)
    return node


def _child(node: Any, token: str, pointer: str) -> Any:
    if isinstance(node, dict):
        key = _key(node, token)
        if key is None:
            raise PatchError(f"{pointer} does not exist (no member {token!r})")
        return node[key]
    if isinstance(node, list):
        return node[_index(node, token, pointer, allow_end=False)]
    raise PatchError(f"{pointer} does not exist ({token!r} is inside a scalar)")


def _key(node: dict[Any, Any], token: str) -> Any:
    if token in node:
        return token
    if token.isdigit() and int(token) in node:
        return int(token)
    return None


def _index(node: list[Any], token: str, pointer: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(node)
    if not re.fullmatch(r"0|[1-9]\d*", token):
        raise PatchError(f"{pointer}: {token!r} is not an array index")
    index = int(token)
    if index > len(node) or (index == len(node) and not allow_end):
        raise PatchError(f"{pointer}: index {index} is out of range (length {len(node)})")
    return index


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    parts = tokens(pointer)
    node = doc
    for token in parts[:-1]:
        node = _child(node, token, pointer)
    return node, parts[-1]


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == "":
        return value
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        key = _key(parent, token)
        parent[token if key is None else key] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, pointer, allow_end=True), value)
    else:
        raise PatchError(f"cannot add {pointer}: its parent is a scalar")
    return doc


def _replace(doc: Any, pointer: str, value: Any) -> Any:
    """Set an existing member or element in place (it keeps its position and comment)."""
    if pointer == "":
        return value
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        key = _key(parent, token)
        if key is None:
            raise PatchError(f"cannot replace {pointer}: it does not exist")
        parent[key] = value
    elif isinstance(parent, list):
        parent[_index(parent, token, pointer, allow_end=False)] = value
    else:
        raise PatchError(f"cannot replace {pointer}: its parent is a scalar")
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    if pointer == "":
        raise PatchError("cannot remove the whole document")
    parent, token = _parent(doc, pointer)
    if isinstance(parent, dict):
        key = _key(parent, token)
        if key is None:
            raise PatchError(f"cannot remove {pointer}: it does not exist")
        del parent[key]
    elif isinstance(parent, list):
        del parent[_index(parent, token, pointer, allow_end=False)]
    else:
        raise PatchError(f"cannot remove {pointer}: its parent is a scalar")
    return doc


# -- the three-way line merge ----------------------------------------------------------


def _merge(base: str, ours: str, theirs: str, reach: int) -> str:
    """Apply the changes base -> theirs (the patch) to ours (the original file). A region
    where the file and the emitter format differently keeps the file's lines unless a
    change lies within `reach` lines of it."""
    b, o, t = (s.splitlines(keepends=True) for s in (base, ours, theirs))
    deleted = [False] * len(b)
    inserts: list[list[str]] = [[] for _ in range(len(b) + 1)]
    patch = difflib.SequenceMatcher(None, b, t, autojunk=False)
    for tag, i1, i2, j1, j2 in patch.get_opcodes():
        if tag == "equal":
            continue
        gone = b[i1:i2]
        added = t[j1:j2]
        # ruamel hangs the comment lines after a value on that value: removing the value
        # would take them along. Keep trailing comment and blank lines the patch dropped.
        keep = 0
        while keep < len(gone) and _is_note(gone[len(gone) - 1 - keep]):
            keep += 1
        if keep and gone[len(gone) - keep :] != added[len(added) - keep :]:
            i2 -= keep
        for i in range(i1, i2):
            deleted[i] = True
        inserts[i1].extend(added)
    result: list[str] = []
    emitted_insert = [False] * (len(b) + 1)

    def insert_at(i: int) -> None:
        if not emitted_insert[i]:
            result.extend(inserts[i])
            emitted_insert[i] = True

    align = difflib.SequenceMatcher(None, b, o, autojunk=False)
    for tag, x1, x2, y1, y2 in align.get_opcodes():
        if tag == "equal":
            for k in range(x2 - x1):
                insert_at(x1 + k)
                if not deleted[x1 + k]:
                    result.append(o[y1 + k])
            continue
        # An insertion at either edge counts: its indentation must match its neighbours'.
        lo, hi = max(0, x1 - reach), min(len(b), x2 + reach)
        reached = any(deleted[lo:hi]) or any(inserts[x] for x in range(lo, hi + 1))
        insert_at(x1)
        if not reached:
            result.extend(o[y1:y2])  # the file's own formatting of lines the patch missed
        else:
            for x in range(x1, x2):
                insert_at(x)
                if not deleted[x]:
                    result.append(b[x])
    insert_at(len(b))
    return "".join(result)


def _is_note(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")
