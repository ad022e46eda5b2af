"""Which contended surfaces a repository has: what its configuration says, else what is found.

A section of the configuration that is written is taken as written; `enabled = false`
switches its surface off on purpose. A section that is absent is *discovered* by the code
below, which `lanes init` also uses to write its lanes.toml, and what it finds is guarded
and checked exactly as if it were written down. A surface is left alone only when the
repository has none of it, or when its section is switched off: nothing is silently
unchecked.

Discovery looks at one list of paths and reads a few files: for a command, the committed
tree of `main` (what deploys, and what no lane can change for itself); for `lanes init`,
the main checkout's files as they are on disk. It runs at most once per command, the
first time a command asks for `Config.surfaces`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from lanes.config import Config, Settings
    from lanes.surfaces.required import RequiredSpec
    from lanes.surfaces.workflows import Workflow

# configured: written in the configuration; discovered: found; off: `enabled = false`;
# none: the repository has no such surface; ambiguous: several candidates fit, and
# discovery will not pick one silently (each is guarded, and the gate fails until the
# section names one).
Status = Literal["configured", "discovered", "off", "none", "ambiguous"]
ACTIVE: tuple[Status, ...] = ("configured", "discovered")

Reader = Callable[[list[str]], dict[str, str | None]]


@dataclass(frozen=True)
class _Found:
    """One surface as resolved: its status, and whether lanes guards and checks it."""

    status: Status

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


@dataclass(frozen=True)
class ManifestSurface(_Found):
    path: str = ""
    entries_dir: str = ""
    required: RequiredSpec | None = None
    required_status: Status = "none"
    required_origin: str = ""
    required_candidates: tuple[RequiredSpec, ...] = ()  # when several lists fit
    candidates: tuple[str, ...] = ()
    origin: str = ""


@dataclass(frozen=True)
class VersionSurface(_Found):
    files: tuple[str, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()  # (file, why it holds no version we read)
    origin: str = ""


@dataclass(frozen=True)
class DeploySurface(_Found):
    workflow: str = ""
    candidates: tuple[str, ...] = ()
    origin: str = ""
    # Workflows that also looked like a deploy but scored lower: not dispatched, but
    # guarded (a lane may not edit what may well deploy) and named, never passed over.
    runners_up: tuple[str, ...] = ()


@dataclass(frozen=True)
class Surfaces:
    manifest: ManifestSurface
    version: VersionSurface
    deploy: DeploySurface
    source: str  # where discovery looked: "main 1a2b3c4d5e6f", "the main checkout"

    def of(self, kind: str) -> ManifestSurface | VersionSurface | DeploySurface:
        found: dict[str, ManifestSurface | VersionSurface | DeploySurface] = {
            "manifest": self.manifest,
            "version": self.version,
            "deploy": self.deploy,
        }
        return found[kind]

    @property
    def version_files(self) -> list[str]:
        return list(self.version.files) if self.version.active else []

    def contended(self) -> list[str]:
        """Every path no lane may change: each surface's files, and every candidate of an
        ambiguous one (an agent must not edit deploy-prod.yml because nobody chose yet)."""
        paths: list[str] = []
        m, v, d = self.manifest, self.version, self.deploy
        if m.active:
            paths.append(m.path)
        elif m.status == "ambiguous":
            paths += m.candidates
        if v.active:
            paths += v.files
        if d.active:
            paths.append(d.workflow)
        elif d.status == "ambiguous":
            paths += d.candidates
        paths += d.runners_up
        return list(dict.fromkeys(paths))

    def describe(self) -> list[dict[str, object]]:
        """One row per surface, for `status`, `verify` and `init --dry-run`."""
        m, v, d = self.manifest, self.version, self.deploy
        rows: list[dict[str, object]] = [
            _row("manifest", m.status, [m.path] if m.path else list(m.candidates), m.origin),
            _row(
                "required",
                m.required_status,
                [str(m.required)] if m.required else [str(c) for c in m.required_candidates],
                m.required_origin,
            ),
            _row("version", v.status, list(v.files), v.origin),
            _row("deploy", d.status, [d.workflow] if d.workflow else list(d.candidates), d.origin),
        ]
        if v.unreadable:
            rows[2]["unreadable"] = [{"file": f, "why": why} for f, why in v.unreadable]
        return rows


def _row(kind: str, status: Status, paths: list[str], origin: str) -> dict[str, object]:
    return {"surface": kind, "status": status, "paths": paths, "origin": origin}


# -- resolving a configuration ---------------------------------------------------------------


def resolve(cfg: Config) -> Surfaces:
    """The surfaces of `cfg`'s repository: written sections as written, the rest discovered
    on `main`'s committed tree (on the checkout's files when `main` has no commit yet)."""
    from lanes import git

    head = git.rev_parse(cfg.main_checkout, cfg.main)
    if head is None:
        paths = git.worktree_files(cfg.main_checkout)
        source = "the main checkout (main has no commit yet)"
        return resolve_settings(cfg.settings, paths, _disk_reader(cfg), source)
    return resolve_at(cfg, head, f"{cfg.main} {head[:12]}")


def resolve_at(cfg: Config, commit: str, source: str) -> Surfaces:
    """The surfaces as they would be with `commit` as main (the guard asks it of a lane's
    tip: a lane may not change what lanes discovers)."""
    from lanes import git

    repo = cfg.main_checkout

    def read(wanted: list[str]) -> dict[str, str | None]:
        return {p: _decode(b) for p, b in git.read_blobs(repo, commit, wanted).items()}

    return resolve_settings(cfg.settings, git.tree_paths(repo, commit), read, source)


def watched(s: Surfaces) -> dict[str, str]:
    """What discovery settled, path by path (a surface's files, candidates, required lists),
    to tell whether a branch would change it."""
    m, v, d = s.manifest, s.version, s.deploy
    found = {p: f"manifest {m.status}" for p in (m.path, *m.candidates) if p}
    for spec in (m.required, *m.required_candidates):
        if spec is not None:
            found[str(spec)] = f"required list {m.required_status}"
    found.update({p: f"version {v.status}" for p in v.files})
    found.update({p: f"deploy {d.status}" for p in (d.workflow, *d.candidates) if p})
    found.update({p: "deploy runner-up" for p in d.runners_up})
    return found


def resolve_on_disk(cfg: Config) -> Surfaces:
    """What `lanes init` sees: the main checkout's files as they are now."""
    from lanes import git

    return resolve_settings(
        cfg.settings, git.worktree_files(cfg.main_checkout), _disk_reader(cfg), "the main checkout"
    )


def _disk_reader(cfg: Config) -> Reader:
    root = cfg.main_checkout

    def read(wanted: list[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for path in wanted:
            target = root / path
            try:
                found[path] = _decode(target.read_bytes()) if target.is_file() else None
            except OSError:
                found[path] = None
        return found

    return read


def _decode(blob: bytes | None) -> str | None:
    return None if blob is None else blob.decode("utf-8", "replace")


def resolve_settings(settings: Settings, paths: list[str], read: Reader, source: str) -> Surfaces:
    return Surfaces(
        _manifest(settings, paths, read),
        _version(settings, paths, read),
        _deploy(settings, paths, read),
        source,
    )


# -- the manifest and its required list ------------------------------------------------------

_MANIFEST = re.compile(r"(?:^|/)(?:migrations?/[^/]*manifest[^/]*|[^/]*boot_manifest[^/]*)\.txt$")
_GUARD_FILE = re.compile(r"(?:^|/)[^/]*(?:schema|guard|migrat|required)[^/]*\.py$")
_REQUIRED_NAME = re.compile(r"REQUIRED.*MIGRATION|MIGRATION.*REQUIRED", re.IGNORECASE)
_MAX_GUARD_FILES = 40  # python files read while looking for the required list


def _manifest(settings: Settings, paths: list[str], read: Reader) -> ManifestSurface:
    from lanes.surfaces import required as required_mod

    written = settings.manifest
    if written is not None and not written.enabled:
        return ManifestSurface("off", origin="[manifest] enabled = false")
    status: Status
    if written is not None:
        path, status, origin = written.path, "configured", "[manifest] path"
        entries_dir = written.entries_dir.strip("/") or posixpath.dirname(written.path)
    else:
        found = [p for p in paths if _MANIFEST.search(p)]
        if not found:
            # A schema guard that requires migrations without a manifest to allow them is
            # the RC3 outage itself (a manifest deleted or renamed on main): its list is
            # still found, and the gate fails on it.
            none = ManifestSurface("none", origin="no *manifest*.txt in a migrations folder")
            return _discover_required(none, paths, read, "")
        if len(found) > 1:
            return ManifestSurface(
                "ambiguous",
                candidates=tuple(found),
                origin=f"{len(found)} manifests fit: "
                + ", ".join(found)
                + "; name one in [manifest] path",
            )
        path, status = found[0], "discovered"
        origin = "the only *manifest*.txt in a migrations folder"
        entries_dir = posixpath.dirname(path)
    surface = ManifestSurface(status, path, entries_dir, origin=origin)
    if written is not None and written.required is not None:
        if not written.required.strip():
            return _with_required(surface, None, "none", "[manifest] required is empty")
        spec = required_mod.parse_spec(written.required)
        return _with_required(surface, spec, "configured", "[manifest] required")
    return _discover_required(surface, paths, read, entries_dir)


def _discover_required(
    surface: ManifestSurface, paths: list[str], read: Reader, near: str
) -> ManifestSurface:
    from dataclasses import replace

    found = find_required_all(paths, read, near)
    if not found:
        return _with_required(
            surface, None, "none", "no list named like *REQUIRED*MIGRATION* was found"
        )
    if len(found) > 1:  # never settled silently: a lane adding a look-alike list could move it
        listed = ", ".join(map(str, found))
        ambiguous = _with_required(
            surface,
            None,
            "ambiguous",
            f"{len(found)} lists fit: {listed}; name one in [manifest] required",
        )
        return replace(ambiguous, required_candidates=tuple(found))
    return _with_required(
        surface, found[0], "discovered", f"the list {found[0].name} in {found[0].file}"
    )


def _with_required(
    surface: ManifestSurface, spec: RequiredSpec | None, status: Status, origin: str
) -> ManifestSurface:
    from dataclasses import replace

    return replace(surface, required=spec, required_status=status, required_origin=origin)


def find_required_all(paths: list[str], read: Reader, near: str) -> list[RequiredSpec]:
    """Every module-level list named like *REQUIRED*MIGRATION* (a schema guard's) that the
    gate's own reader accepts: in Python files named like a guard, nearest `near` first."""
    import ast

    from lanes.errors import LanesError
    from lanes.surfaces import required as required_mod

    top = near.split("/", 1)[0] if near else ""
    candidates = [p for p in paths if p.endswith(".py") and _GUARD_FILE.search(p)]
    candidates.sort(key=lambda p: (not p.startswith(top + "/") if top else False, p.count("/"), p))
    texts = read(candidates[:_MAX_GUARD_FILES])
    found: list[RequiredSpec] = []
    for path in candidates[:_MAX_GUARD_FILES]:
        text = texts.get(path)
        if not text or not _REQUIRED_NAME.search(text):
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError):
            continue
        names = [
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name) and _REQUIRED_NAME.search(target.id)
        ]
        for name in dict.fromkeys(names):
            spec = required_mod.RequiredSpec(path, name)
            try:
                required_mod.read(spec, text)
            except LanesError:
                continue  # the gate could not read it either: do not offer it
            found.append(spec)
    return found


# -- version files ---------------------------------------------------------------------------

# Where real projects keep their version, top-level files first.
VERSION_FILES = (
    "pyproject.toml",
    "package.json",
    "Cargo.toml",
    "setup.cfg",
    "build.gradle",
    "build.gradle.kts",
    "server.json",
)
_PY_VERSION = re.compile(
    r"^(?:src/)?[A-Za-z_][A-Za-z0-9_]*/(?:__init__|__version__|_version|version)\.py$"
)


def version_candidates(paths: Iterable[str]) -> list[str]:
    """The files that may carry the project's version, in a stable order."""
    present = set(paths)
    top = [name for name in VERSION_FILES if name in present]
    packages = sorted(p for p in present if _PY_VERSION.match(p))
    return top + packages


def _version(settings: Settings, paths: list[str], read: Reader) -> VersionSurface:
    from lanes.errors import LanesError
    from lanes.surfaces import version as version_mod

    written = settings.version
    if written is not None and not written.enabled:
        return VersionSurface("off", origin="[version] enabled = false")
    if written is not None:
        return VersionSurface("configured", tuple(written.files), origin="[version] files")
    candidates = version_candidates(paths)
    texts = read(candidates)
    found: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for path in candidates:
        text = texts.get(path)
        if text is None:
            continue
        if path.endswith(".py") and not version_mod.declares_version(path, text):
            continue  # a package's __init__.py without __version__ is not a version file
        try:
            version_mod.read(path, text)
        except LanesError as exc:  # the reason alone: the file is named beside it
            unreadable.append(
                (path, exc.message.removeprefix(f"cannot read the version of {path}: "))
            )
            continue
        found.append(path)
    if not found:
        why = (
            "no version file was found" if not unreadable else "no file holds a version lanes reads"
        )
        return VersionSurface("none", unreadable=tuple(unreadable), origin=why)
    return VersionSurface(
        "discovered",
        tuple(found),
        tuple(unreadable),
        origin="each holds a version: " + ", ".join(found),
    )


# -- the deploy workflow ---------------------------------------------------------------------

# How the deploy workflow is recognised: by what it is, each sign scored.
#   +2  `deploy` in its file name or `name:` (backend_deploy.yml, "Deploy backend to ECS");
#   +1  `workflow_run` children name it: a chain starts from it (the smoke test after it);
#   +1  a step deploys (a deploy command or action; `workflows._DEPLOYS`, a loose match).
# It needs 2 at least, so a CI workflow with a failure notifier chained off it, or a step
# that merely mentions deploying, is not taken for the deploy. The best score wins; a tie
# (deploy-dev.yml and deploy-prod.yml) is ambiguous and never settled silently.
# A workflow whose name says it watches a deploy rather than makes one (post-deploy,
# pre-deploy, after-deploy, a deploy gate, check or status, smoke, sanity, rollback,
# preview) is never the deploy, however many signs it has: those are the workflows that
# follow the deploy. Nor is a reusable workflow (`workflow_call` alone): another one runs it.
# A file GitHub cannot parse is judged by its file name and the `name:` line seen in it,
# so a broken deploy workflow is still found, guarded, and reported by the gate.
_DEPLOY_WORD = re.compile(r"deploy", re.IGNORECASE)
_NOT_THE_DEPLOY = re.compile(
    r"(?:post|pre|after)[-_ ]?deploy|deploy(?:ment)?[-_ ]?(?:gate|check|status|preview)"
    r"|(?<![a-z])(?:smoke|sanity|rollback|preview|gate)(?![a-z])",
    re.IGNORECASE,
)
_MIN_SCORE = 2


def _deploy(settings: Settings, paths: list[str], read: Reader) -> DeploySurface:
    from lanes.surfaces import workflows as wf

    written = settings.deploy
    if written is not None and not written.enabled:
        return DeploySurface("off", origin="[deploy] enabled = false")
    if written is not None:
        return DeploySurface("configured", written.workflow, origin="[deploy] workflow")
    files = [p for p in paths if wf.is_workflow_path(p)]
    if not files:
        return DeploySurface("none", origin=f"no workflow in {wf.WORKFLOW_DIR}")
    texts = read(files)
    flows = wf.parse_all({p: texts.get(p) or "" for p in files})
    best, why, others = deploy_candidates(flows)
    if not best:
        return DeploySurface("none", origin="no workflow looks like a deploy " + why)
    if len(best) > 1:
        listed = ", ".join(best)
        return DeploySurface(
            "ambiguous",
            candidates=tuple(best),
            origin=f"{len(best)} workflows fit equally ({why}): {listed}; "
            "name the one to dispatch in [deploy] workflow",
        )
    also = f"; also looks like a deploy, guarded too: {', '.join(others)}" if others else ""
    return DeploySurface("discovered", best[0], origin=why + also, runners_up=tuple(others))


def deploy_candidates(flows: list[Workflow]) -> tuple[list[str], str, list[str]]:
    """The workflows that look most like the deploy, and why (see the scoring above), and
    the others that pass the minimum score. Ties are all returned, sorted by path."""
    scored: dict[str, tuple[int, list[str]]] = {}
    for flow in flows:
        score, reasons = _deploy_score(flow, flows)
        if score >= _MIN_SCORE:
            scored[flow.path] = (score, reasons)
    if not scored:
        return [], "(no 'deploy' in a name, no workflow_run parent with a deploy step)", []
    top = max(s for s, _ in scored.values())
    best = sorted(p for p, (s, _) in scored.items() if s == top)
    others = sorted(p for p, (s, _) in scored.items() if s != top)
    return best, " and ".join(scored[best[0]][1]), others


def _deploy_score(flow: Workflow, flows: list[Workflow]) -> tuple[int, list[str]]:
    from lanes.surfaces import workflows as wf

    name = flow.name or flow.guessed_name  # guessed: a `name:` line in a file YAML refused
    label = f"{flow.file_name} {name or ''}"
    reasons: list[str] = []
    if _NOT_THE_DEPLOY.search(label) or set(flow.triggers) == {"workflow_call"}:
        return 0, reasons
    score = 0
    if _DEPLOY_WORD.search(label):
        score = 2
        reasons.append("'deploy' in its name")
    if flow.error is not None:  # its triggers and steps are unknown: the name is all there is
        return score, reasons
    if wf.children_of(flow, flows):
        score += 1
        reasons.append("workflow_run children")
    if flow.deploy_steps:
        score += 1
        reasons.append("a deploy step")
    return score, reasons
