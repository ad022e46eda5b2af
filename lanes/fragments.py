"""Fragments: what a lane asks of the contended files, validated when dropped.

A fragment is data, never code: manifest entries (plain file names), a version bump
(major, minor or patch) or a deploy-workflow change as a JSON Patch (RFC 6902). Each is
one JSON file in the lane's `fragments/` directory, written whole by a rename.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from lanes.config import Config
from lanes.errors import BadInput
from lanes.names import check_entry

BUMPS = ("patch", "minor", "major")  # in increasing order
WITHDRAWN = "withdrawn"  # beside fragments/ in a claim directory
PATCH_FILE_LIMIT = 1 << 20  # bytes


class _Fragment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ManifestFragment(_Fragment):
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


class VersionFragment(_Fragment):
    kind: Literal["version"] = "version"
    bump: Literal["major", "minor", "patch"]


class PatchOp(_Fragment):
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
        for pointer in (self.path, self.from_):
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


class DeployFragment(_Fragment):
    kind: Literal["deploy"] = "deploy"
    patch: list[PatchOp] = Field(min_length=1)
    source: str = ""  # the file name it was read from, for people


Fragment = Annotated[
    ManifestFragment | VersionFragment | DeployFragment, Field(discriminator="kind")
]
_FRAGMENT = TypeAdapter(Fragment)


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
    if not isinstance(doc, list):
        raise BadInput(
            "bad-fragment",
            f"{path} is not a JSON Patch: the document must be a list of operations",
            hint='e.g. [{"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"}]',
        )
    try:
        problem = _not_json(doc, "")
    except RecursionError:
        problem = "it nests too deeply"
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
            f"{path} is not a valid JSON Patch (RFC 6902): " + _first_error(exc),
            hint="each operation needs op (add, remove, replace, move, copy, test), "
            "a path starting with '/', and value or from as its op requires",
        ) from None


def _not_json(node: Any, where: str) -> str:
    """What in a YAML-loaded document JSON cannot hold ('' when nothing): dates, sets,
    binary, non-string keys, NaN and infinities."""
    if node is None or isinstance(node, bool | int | str):
        return ""
    if isinstance(node, float):
        return "" if math.isfinite(node) else f"{node} at {where or '/'} is not a JSON number"
    if isinstance(node, list):
        return next(
            (p for i, item in enumerate(node) if (p := _not_json(item, f"{where}/{i}"))), ""
        )
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                return f"the key {key!r} at {where or '/'} is not a string"
            if problem := _not_json(value, f"{where}/{key}"):
                return problem
        return ""
    return f"{type(node).__name__} value {node!r} at {where or '/'} has no JSON form"


def manifest(entries: list[str]) -> ManifestFragment:
    for entry in entries:
        check_entry(entry)
    if not entries:
        raise BadInput(
            "bad-fragment",
            "no manifest entries given",
            hint="lanes fragment manifest 261_legal_chain_v2.sql",
        )
    return ManifestFragment(entries=entries)


def version(bump: str) -> VersionFragment:
    if bump not in BUMPS:
        raise BadInput(
            "bad-bump", f"{bump!r} is not a version bump", hint="use one of: major, minor, patch"
        )
    return VersionFragment.model_validate({"bump": bump})


def fragment_to_json(
    fragment: ManifestFragment | VersionFragment | DeployFragment,
) -> dict[str, Any]:
    if isinstance(fragment, DeployFragment):
        return {
            "kind": "deploy",
            "patch": [op.to_json() for op in fragment.patch],
            "source": fragment.source,
        }
    return fragment.model_dump()


def write(frag_dir: Path, fragment: ManifestFragment | VersionFragment | DeployFragment) -> Path:
    """Write one fragment file whole (temp file, fsync, rename); names sort by drop time."""
    name = f"{time.time_ns():020d}-{fragment.kind}-{uuid.uuid4().hex[:6]}.json"
    target = frag_dir / name
    tmp = frag_dir / f".{name}.tmp"
    text = json.dumps(fragment_to_json(fragment), indent=2, sort_keys=True, allow_nan=False)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # after a failed write (readers skip a killed one: not *.json)
    return target


def read_all(
    frag_dir: Path,
) -> list[tuple[Path, ManifestFragment | VersionFragment | DeployFragment]]:
    """Every fragment in drop order. A file that does not parse raises BadInput naming it."""
    if not frag_dir.is_dir():
        return []
    found = []
    for path in sorted(frag_dir.glob("*.json")):
        try:
            found.append((path, _FRAGMENT.validate_json(path.read_bytes())))
        except ValidationError as exc:
            raise BadInput(
                "bad-fragment",
                f"fragment {path.name} is invalid: " + _first_error(exc),
                hint=f"take it back with `lanes fragment withdraw {path.name}` in the lane's "
                "worktree, and drop a valid one",
                fragment=str(path),
            ) from None
    return found


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


def drop(
    cfg: Config, wave: str, lane: str, fragment: ManifestFragment | VersionFragment | DeployFragment
) -> Path:
    """Put a fragment into a held lane's claim directory and record it in the ledger."""
    from lanes import claims, state

    claim_dir, record = claims.held(cfg, wave, lane)
    state.require_open(cfg, wave, lane, "take fragments")
    if getattr(cfg.settings, fragment.kind) is None:  # the pass would bounce it
        raise BadInput(
            "no-surface",
            f"no [{fragment.kind}] section is configured ({cfg.source}): there is no "
            f"{fragment.kind} surface for this fragment to change",
            hint=f"drop it only where [{fragment.kind}] is configured; ask the operator",
        )
    path = write(claim_dir / claims.FRAGMENTS, fragment)
    claims.ledger(cfg, wave).append(
        "fragment",
        lane,
        record.agent,
        kind=fragment.kind,
        file=path.name,
        **_summary(fragment),
    )
    return path


def withdraw(cfg: Config, wave: str, lane: str, names: list[str]) -> list[Path]:
    """Take fragments back from a claimed or bounced lane (a bad one the integrator
    bounced, say). Nothing is deleted: each moves to the claim's `withdrawn/` folder."""
    from lanes import claims, state

    claim_dir, record = claims.held(cfg, wave, lane)
    state.require_open(cfg, wave, lane, "withdraw fragments")
    frag_dir = claim_dir / claims.FRAGMENTS
    present = {path.name: _parsed(path) for path in sorted(frag_dir.glob("*.json"))}
    # A name as `lanes fragment` printed it (the file's path) or as a bounce gave it.
    wanted = [Path(n).name if Path(n).parent in (Path("."), frag_dir) else n for n in names]
    unknown = [name for name in wanted if name not in present]
    if unknown or not names:
        listing = [
            f"{name} ({_described(frag) if frag else 'does not parse'})"
            for name, frag in present.items()
        ]
        raise BadInput(
            "unknown-fragment",
            f"lane {wave}/{lane} has no fragment named {', '.join(map(repr, unknown))}"
            if unknown
            else "name the fragments to withdraw",
            hint="its fragments: " + ("; ".join(listing) or "none"),
            fragments={
                name: fragment_to_json(frag) if frag else None for name, frag in present.items()
            },
        )
    shelf = claim_dir / WITHDRAWN
    shelf.mkdir(exist_ok=True)
    moved = []
    for name in dict.fromkeys(wanted):
        # Moved first, logged second: a kill in between leaves the file kept, unlogged.
        os.replace(frag_dir / name, shelf / name)
        claims.ledger(cfg, wave).append("fragment", lane, record.agent, withdrawn=name)
        moved.append(shelf / name)
    return moved


def unmet_entries(
    cfg: Config, branch: str, entries: list[str], worktree: Path | None = None
) -> list[str]:
    """Manifest entries whose file is in none of: the lane's worktree (if given, as it is
    on disk), its branch, main. The pass would bounce the lane (missing-entry) unless
    another lane lands the file first: said, not refused."""
    from lanes import git

    if not entries:
        return []
    where = cfg.entries_dir()
    known = set(git.list_files(cfg.main_checkout, branch, where) or [])
    known |= set(git.list_files(cfg.main_checkout, cfg.main, where) or [])
    if worktree is not None and (worktree / where).is_dir():
        known |= {p.name for p in (worktree / where).iterdir() if p.is_file()}
    return [
        f"manifest entry {e}: no such file in {where or 'the top folder'} of the lane or of "
        f"{cfg.main}; commit it before you submit, or the integrator bounces the lane "
        "(missing-entry)"
        for e in dict.fromkeys(entries)
        if e not in known
    ]


def _parsed(path: Path) -> ManifestFragment | VersionFragment | DeployFragment | None:
    """The fragment in a file, or None when it does not parse (it can still be withdrawn)."""
    try:
        return _FRAGMENT.validate_json(path.read_bytes())
    except (ValidationError, OSError):
        return None


def _described(fragment: ManifestFragment | VersionFragment | DeployFragment) -> str:
    if isinstance(fragment, ManifestFragment):
        return "manifest: " + ", ".join(fragment.entries)
    if isinstance(fragment, VersionFragment):
        return f"version: {fragment.bump}"
    return "deploy: " + ", ".join(f"{op.op} {op.path}" for op in fragment.patch)


def _summary(fragment: ManifestFragment | VersionFragment | DeployFragment) -> dict[str, Any]:
    if isinstance(fragment, ManifestFragment):
        return {"entries": fragment.entries}
    if isinstance(fragment, VersionFragment):
        return {"bump": fragment.bump}
    return {"ops": len(fragment.patch), "paths": [op.path for op in fragment.patch]}
