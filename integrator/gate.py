"""The pre-deploy gate: the invariants whose absence caused RC3 and RC4, proved on `main`.

Every file is read from the committed tree of `main` (what a deploy ships), never from
the checkout. Each check has a stable name and a detail a person can act on; a check
whose surface is not configured is reported as skipped (ok, "not configured"). The
report never raises for a failed check: the CLI turns `ok == False` into exit 4.
Configuration that cannot mean anything (a malformed `required`, an unknown wave, a
missing `main`) is bad input instead: exit 2, nothing written. See docs/gate.md.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from integrator import trailers
from lanes import claims, git, state
from lanes.config import Config
from lanes.errors import BadInput, LanesError
from lanes.guard import branch_violations
from lanes.surfaces import required as required_mod
from lanes.surfaces import workflows as wf

CHECKS = (
    "manifest-required",
    "manifest-entries-exist",
    "versions-agree",
    "deploy-chain",
    "migration-numbers-unique",
    "wave-integrated",
    "main-linear",
)
_MIGRATION = re.compile(r"(\d+)_")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


@dataclass(frozen=True)
class GateReport:
    ok: bool
    checks: list[Check]
    next: list[str]
    main: str  # the commit of main that was checked
    waves: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]


def _skip(name: str, why: str) -> Check:
    return Check(name, True, f"skipped: {why}", skipped=True)


class _Tree:
    """Files of one commit, fetched in batches and kept."""

    def __init__(self, repo: Any, commit: str) -> None:
        self.repo, self.commit = repo, commit
        self._blobs: dict[str, bytes | None] = {}
        self._dirs: dict[str, list[str] | None] = {}

    def fetch(self, paths: list[str]) -> None:
        wanted = [p for p in dict.fromkeys(paths) if p not in self._blobs]
        self._blobs.update(git.read_blobs(self.repo, self.commit, wanted))

    def text(self, path: str) -> str | None:
        if path not in self._blobs:
            self.fetch([path])
        blob = self._blobs[path]
        return None if blob is None else blob.decode("utf-8", "replace")

    def files(self, directory: str) -> list[str] | None:
        if directory not in self._dirs:
            self._dirs[directory] = git.list_files(self.repo, self.commit, directory)
        return self._dirs[directory]


# -- the run ---------------------------------------------------------------------------------


def verify(cfg: Config, wave: str | None = None) -> GateReport:
    """Run every check on `main`; with a wave, append a `verify` event to its ledger."""
    manifest = cfg.settings.manifest
    spec = required_mod.parse_spec(manifest.required) if manifest and manifest.required else None
    head = git.rev_parse(cfg.main_checkout, cfg.main)
    if head is None:
        raise BadInput(
            "no-main",
            f"branch {cfg.main!r} has no commit in this repository",
            hint="set `main` in the configuration to the branch that deploys",
        )
    waves = _waves(cfg, wave)
    tree = _Tree(cfg.main_checkout, head)
    tree.fetch(_paths_to_read(cfg, tree, spec))

    checks = [
        *_manifest_checks(cfg, tree, spec),
        _versions_agree(cfg, tree),
    ]
    chain_check, commands = _deploy_chain(cfg, tree)
    checks += [
        chain_check,
        _numbers_unique(cfg, tree),
        _wave_integrated(cfg, head, waves),
        _main_linear(cfg, head, waves, wave),
    ]
    ok = all(c.ok for c in checks)
    report = GateReport(ok, checks, commands if ok else [], head, waves)
    if wave is not None:
        claims.ledger(cfg, wave).append("verify", ok=ok, failed=report.failed, main=head)
    return report


def _waves(cfg: Config, wave: str | None) -> list[str]:
    if wave is None:
        return state.waves(cfg)
    return [state.known_wave(cfg, wave, "; or run lanes verify without WAVE")]


def _paths_to_read(cfg: Config, tree: _Tree, spec: required_mod.RequiredSpec | None) -> list[str]:
    s = cfg.settings
    paths: list[str] = []
    if s.manifest:
        paths.append(s.manifest.path)
    if spec:
        paths.append(spec.file)
    if s.version:
        paths += s.version.files
    if s.deploy:
        paths += _workflow_paths(tree)
        paths.append(s.deploy.workflow)
    return paths


def _workflow_paths(tree: _Tree) -> list[str]:
    names = tree.files(wf.WORKFLOW_DIR) or []
    return [f"{wf.WORKFLOW_DIR}/{n}" for n in sorted(names) if n.endswith(wf.SUFFIXES)]


# -- manifest (RC3) --------------------------------------------------------------------------


def _manifest_checks(
    cfg: Config, tree: _Tree, spec: required_mod.RequiredSpec | None
) -> list[Check]:
    m = cfg.settings.manifest
    if m is None:
        why = "not configured (no [manifest] section)"
        return [_skip("manifest-required", why), _skip("manifest-entries-exist", why)]
    text = tree.text(m.path)
    entries = required_mod.text_entries(text) if text is not None else None  # None: no file
    return [
        _required_check(cfg, tree, spec, m.path, entries),
        _entries_exist(cfg, tree, m.path, entries),
    ]


def _required_check(
    cfg: Config,
    tree: _Tree,
    spec: required_mod.RequiredSpec | None,
    manifest: str,
    entries: list[str] | None,
) -> Check:
    name = "manifest-required"
    if spec is None:
        return _skip(name, "not configured ([manifest] required is empty)")
    source = tree.text(spec.file)
    if source is None:
        return Check(
            name, False, f"{spec.file} (named by [manifest] required) is not in {cfg.main}'s tree"
        )
    try:
        needed = list(dict.fromkeys(required_mod.read(spec, source)))
    except LanesError as exc:
        return Check(name, False, exc.message)
    have = set(entries or ())
    missing = [r for r in needed if r not in have]
    if entries is None:
        return Check(
            name,
            False,
            f"the manifest {manifest} is not in {cfg.main}'s tree: all {len(missing)} "
            f"required migrations ({spec}) are missing: {', '.join(missing)}",
        )
    if missing:
        return Check(
            name,
            False,
            f"{manifest} lacks {len(missing)} of the {len(needed)} required "
            f"migrations ({spec}): {', '.join(missing)}" + _how_to_add(cfg, tree, missing),
        )
    return Check(name, True, f"all {len(needed)} required migrations ({spec}) are in {manifest}")


def _how_to_add(cfg: Config, tree: _Tree, missing: list[str]) -> str:
    """The fragment that adds the missing entries whose files exist; for the others, that
    the file is absent (and the file the name probably means, e.g. with `.sql`)."""
    entries_dir = cfg.entries_dir()
    files = tree.files(entries_dir) or []
    present = [m for m in missing if m in files]
    advice = ""
    if present:
        advice += f"; add them with `lanes fragment manifest {' '.join(present)}` and integrate"
    for absent in (m for m in missing if m not in files):
        near = [f for f in files if f.startswith(absent + ".")]
        advice += f"; {absent} is not a file in {entries_dir or 'the repository root'}" + (
            f" (the required list may mean {near[0]}: the names must match)"
            if near
            else ": commit the migration first"
        )
    return advice


def _entries_exist(cfg: Config, tree: _Tree, manifest: str, entries: list[str] | None) -> Check:
    name = "manifest-entries-exist"
    entries_dir = cfg.entries_dir()
    files = tree.files(entries_dir)
    if entries is None:
        return Check(name, False, f"the manifest {manifest} is not in {cfg.main}'s tree")
    if files is None:
        return Check(
            name, False, f"entries_dir {entries_dir} is not a directory in {cfg.main}'s tree"
        )
    unique = list(dict.fromkeys(entries))
    present = set(files)
    missing = [e for e in unique if e not in present]
    if missing:
        return Check(
            name,
            False,
            f"{manifest} names {len(missing)} file(s) not in {entries_dir}: "
            f"{', '.join(missing)}; add the migration files or remove the entries",
        )
    if not unique:
        return Check(name, True, f"{manifest} has no entries")
    return Check(name, True, f"all {len(unique)} entries of {manifest} are files in {entries_dir}")


def _numbers_unique(cfg: Config, tree: _Tree) -> Check:
    name = "migration-numbers-unique"
    if cfg.settings.manifest is None:
        return _skip(name, "not configured (no [manifest] section)")
    entries_dir = cfg.entries_dir()
    files = tree.files(entries_dir)
    if files is None:
        return Check(name, False, f"entries_dir {entries_dir} is not a directory in main")
    stems: dict[int, dict[str, list[str]]] = {}
    for file in sorted(files):
        match = _MIGRATION.match(file)
        if match:
            # 049_x.sql and 049_x.down.sql are one migration; 261_a and 261_b are two.
            stems.setdefault(int(match.group(1)), {}).setdefault(file.split(".")[0], []).append(
                file
            )
    clashes = {n: s for n, s in stems.items() if len(s) > 1}
    if clashes:
        parts = [
            f"{n:03d}: " + ", ".join(f for group in s.values() for f in group)
            for n, s in sorted(clashes.items())
        ]
        return Check(
            name,
            False,
            f"migrations in {entries_dir} share a number: "
            + "; ".join(parts)
            + "; renumber the later one(s)",
        )
    count = sum(len(s) for s in stems.values())
    return Check(name, True, f"{count} numbered migrations in {entries_dir}, no number twice")


# -- versions -------------------------------------------------------------------------------


def _version_of(path: str, text: str) -> str:
    """The version field of a TOML (project / tool.poetry) or JSON file; ValueError why not."""
    if path.endswith(".toml"):
        try:
            doc: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path} is not valid TOML ({exc})") from None
        for table in (doc.get("project", {}), doc.get("tool", {}).get("poetry", {})):
            if isinstance(table, dict) and "version" in table:
                return str(table["version"])
        raise ValueError(f"{path} has no [project] or [tool.poetry] version")
    if path.endswith(".json"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        if isinstance(doc, dict) and isinstance(doc.get("version"), str):
            return str(doc["version"])
        raise ValueError(f'{path} has no top-level "version" string')
    raise ValueError(f"{path}: lanes reads versions from .toml and .json files only")


def _versions_agree(cfg: Config, tree: _Tree) -> Check:
    name = "versions-agree"
    v = cfg.settings.version
    if v is None or not v.files:
        return _skip(name, "not configured (no [version] files)")
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    for path in v.files:
        text = tree.text(path)
        if text is None:
            problems.append(f"{path} is not in main's tree")
            continue
        try:
            found.append((path, _version_of(path, text)))
        except ValueError as exc:
            problems.append(str(exc))
    if found:
        first_path, first = found[0]
        for path, version in found[1:]:
            if version != first:
                problems.append(f"{first_path} has {first} but {path} has {version}")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"{', '.join(p for p, _ in found)} all at {found[0][1]}")


# -- the deploy chain (RC4) ------------------------------------------------------------------


def _deploy_chain(cfg: Config, tree: _Tree) -> tuple[Check, list[str]]:
    name = "deploy-chain"
    d = cfg.settings.deploy
    if d is None:
        return _skip(name, "not configured (no [deploy] section)"), []
    deploy_path = PurePosixPath(d.workflow).as_posix()  # ./.github/... is the same file
    flows = wf.parse_all({p: tree.text(p) or "" for p in _workflow_paths(tree)})
    problems = wf.chain_problems(flows, deploy_path)
    deploy = next((w for w in flows if w.path == deploy_path), None)
    if problems or deploy is None:
        return Check(name, False, "; ".join(problems)), []
    chained = wf.chain(deploy, flows)
    children = sum(1 for w in flows if w.is_child)
    detail = (
        f"{deploy_path} and its {len(chained)} chained workflow(s)"
        + (f" ({', '.join(w.display_name for w in chained)})" if chained else "")
        + f" run under a hand dispatch; {children} workflow_run workflow(s) checked"
    )
    return Check(name, True, detail), wf.dispatch_commands(deploy, flows, cfg.main)


# -- the wave --------------------------------------------------------------------------------


def landed_lanes(cfg: Config, head: str, wave: str) -> set[str]:
    """Lanes of `wave` whose trailers are on main: integrated, whatever the ledger says."""
    return {c.lane for c in trailers.landed(cfg.main_checkout, head, wave) if c.lane}


def _wave_integrated(cfg: Config, head: str, waves: list[str]) -> Check:
    name = "wave-integrated"
    if not waves:
        return _skip(name, "no wave has a ledger yet")
    problems: list[str] = []
    summary: list[str] = []
    for w in waves:
        landed = landed_lanes(cfg, head, w)
        hist = state.histories(cfg, w)
        pending = sorted(
            ln for ln, h in hist.items() if h.state == "submitted" and ln not in landed
        )
        if pending:
            problems.append(
                f"wave {w}: submitted but not integrated: {', '.join(pending)} "
                f"(run `lanes integrate {w}`)"
            )
        live = sorted(ln for ln, h in hist.items() if h.state in state.HOLDING and ln not in landed)
        for lane in live:
            branch = cfg.branch(w, lane)
            if not git.branch_exists(cfg.main_checkout, branch):
                continue
            found = branch_violations(cfg, branch)
            if found:
                files = ", ".join(f"{v.path} ({v.surface})" for v in found)
                problems.append(
                    f"wave {w}: lane {lane} ({branch}) changes contended files: {files}; "
                    "revert them in the branch and drop fragments instead"
                )
        integrated = sorted(set(landed) | {ln for ln, h in hist.items() if h.state == "integrated"})
        # Not pending (their agents hold them), but the operator deploys without them.
        out = [
            f"{ln} {h.state}"
            for ln, h in sorted(hist.items())
            if h.state in ("bounced", "claimed") and ln not in landed
        ]
        summary.append(
            f"wave {w}: {len(integrated)} lane(s) integrated, none pending"
            + (f"; not in this deploy: {', '.join(out)}" if out else "")
        )
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, "; ".join(summary))


def wave_base(cfg: Config, wave: str) -> str | None:
    """The earliest base a lane of the wave was claimed at (or its branches' merge-base)."""
    repo = cfg.main_checkout
    bases = [
        str(ev.details["base"])
        for ev in claims.ledger(cfg, wave).events()
        if ev.event == "claim" and ev.details.get("base")
    ]
    bases = [b for b in dict.fromkeys(bases) if git.rev_parse(repo, b)]
    if not bases:
        for branch in git.branches_under(repo, f"lanes/{wave}/"):
            base = git.merge_base(repo, cfg.main, branch)
            if base:
                bases.append(base)
    return git.merge_base_all(repo, bases)


def _main_linear(cfg: Config, head: str, waves: list[str], asked: str | None) -> Check:
    name = "main-linear"
    if not waves:
        return _skip(name, "no wave has a ledger yet, so there is no base to check from")
    bases = [b for b in (wave_base(cfg, w) for w in waves) if b]
    base = git.merge_base_all(cfg.main_checkout, bases)
    which = f"wave {asked}'s base" if asked else "the earliest base of waves " + ", ".join(waves)
    if base is None:
        return _skip(name, f"no lane of {', '.join(waves)} recorded a base")
    merges = git.merge_commits(cfg.main_checkout, base, head)
    if merges:
        listed = "; ".join(f"{sha[:12]} {subject!r}" for sha, subject in merges)
        return Check(
            name,
            False,
            f"{cfg.main} has {len(merges)} merge commit(s) since {base[:12]} ({which}): "
            f"{listed}; replace them with their commits rebased onto {cfg.main} "
            "(the integrator never merges)",
        )
    return Check(name, True, f"no merge commit on {cfg.main} since {base[:12]} ({which})")
