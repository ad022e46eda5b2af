"""Fragments: what a lane asks of the contended files, validated when dropped.

A fragment is data, never code: manifest entries (plain file names), a version bump
(major, minor or patch) or a deploy-workflow change as a JSON Patch (RFC 6902). Each model
and its validation lives with its surface (lanes/surfaces/); this module stores them: one
JSON file in the lane's `fragments/` directory each, written whole by a rename.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from lanes.config import Config
from lanes.errors import BadInput
from lanes.surfaces.base import first_error
from lanes.surfaces.deploy import PATCH_FILE_LIMIT, DeployFragment, PatchOp, parse_patch_file
from lanes.surfaces.manifest import ManifestFragment
from lanes.surfaces.version import BUMPS, VersionFragment

__all__ = [  # the fragment models live with their surfaces; these are re-exported
    "BUMPS",
    "DeployFragment",
    "ManifestFragment",
    "PatchOp",
    "VersionFragment",
    "parse_patch_file",
]

WITHDRAWN = "withdrawn"  # beside fragments/ in a claim directory
_NAME = re.compile(r"[0-9]{20}-(?:manifest|version|deploy)-[0-9a-f]{6}\.json")
_TEMP = re.compile(r"\.[0-9]{20}-(?:manifest|version|deploy)-[0-9a-f]{6}\.json\.tmp")


Fragment = Annotated[
    ManifestFragment | VersionFragment | DeployFragment, Field(discriminator="kind")
]
_FRAGMENT = TypeAdapter(Fragment)


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
    # Every entry counts, not only *.json: what lanes did not write is refused, never
    # skipped. Only a killed write's temp file (.<name>.tmp, never a fragment) is passed over.
    paths = sorted(p for p in frag_dir.iterdir() if not _TEMP.fullmatch(p.name))
    return [(path, parse(path)) for path in paths]


def check_name(name: str) -> str:
    """A fragment file's name as `write` makes it, and nothing else: the names go into the
    landing commit's trailers, so a name read back from disk is validated, never trusted
    (a newline in one forged another lane's trailers)."""
    if not _NAME.fullmatch(name):
        raise BadInput(
            "bad-fragment",
            f"{name!r} is not the name of a fragment lanes wrote "
            "(<20 digits>-<manifest|version|deploy>-<6 hex digits>.json)",
            hint="fragments are dropped with `lanes fragment ...`, never written by hand; "
            "move that file out of the lane's fragments/ folder",
            fragment=name,
        )
    return name


def parse(path: Path) -> ManifestFragment | VersionFragment | DeployFragment:
    """The one reader of a fragment file: BadInput naming it when its name or content is
    not what lanes writes."""
    check_name(path.name)
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 2 * PATCH_FILE_LIMIT:
        raise BadInput(
            "bad-fragment",
            f"fragment {path.name} is not a regular file of at most {2 * PATCH_FILE_LIMIT:,} bytes",
            hint=f"take it back with `lanes fragment withdraw {path.name}`",
            fragment=str(path),
        )
    try:
        fragment = _FRAGMENT.validate_json(path.read_bytes())
    except ValidationError as exc:
        raise BadInput(
            "bad-fragment",
            f"fragment {path.name} is invalid: " + first_error(exc),
            hint=f"take it back with `lanes fragment withdraw {path.name}` in the lane's "
            "worktree, and drop a valid one",
            fragment=str(path),
        ) from None
    if f"-{fragment.kind}-" not in path.name:
        raise BadInput(
            "bad-fragment",
            f"fragment {path.name} holds a {fragment.kind} fragment under another kind's name",
            hint=f"take it back with `lanes fragment withdraw {path.name}`",
            fragment=str(path),
        )
    return fragment


def drop(
    cfg: Config, wave: str, lane: str, fragment: ManifestFragment | VersionFragment | DeployFragment
) -> Path:
    """Put a fragment into a held lane's claim directory and record it in the ledger."""
    from lanes import claims, state

    claim_dir, record = claims.held(cfg, wave, lane)
    state.require_open(cfg, wave, lane, "take fragments")
    surface = cfg.surfaces.of(fragment.kind)
    if not surface.active:  # the pass would bounce it
        raise BadInput(
            "no-surface",
            f"there is no {fragment.kind} surface for this fragment to change: it is "
            f"{surface.status} ({surface.origin})",
            hint=f"ask the operator to name it in [{fragment.kind}] of lanes.toml"
            if surface.status in ("ambiguous", "none")
            else f"[{fragment.kind}] is switched off on purpose; ask the operator",
            status=surface.status,
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
    present = {path.name: parsed(path) for path in sorted(frag_dir.glob("*.json"))}
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


def parsed(path: Path) -> ManifestFragment | VersionFragment | DeployFragment | None:
    """The fragment in a file, or None when it cannot be read or does not parse."""
    try:
        return parse(path)
    except (BadInput, OSError):
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
