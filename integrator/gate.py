"""The pre-deploy gate: the invariants whose absence caused RC3 and RC4, proved on `main`.

Every file is read from the committed tree of `main` (what a deploy ships), never from
the checkout, through the same surface readers the integrator uses. Each check has a
stable name, a detail a person can act on, and a status: `pass`, `fail`, `off` (its
surface is switched off with `enabled = false`) or `none` (the repository has no such
surface, or there is no wave to check). The gate fails closed: a surface that is not
written down is discovered and checked as if it were, and a check that cannot run (a
file missing, a list that cannot be read, two candidates for one surface) fails. The
report never raises for a failed check: the CLI turns `ok == False` into exit 4.
Configuration that cannot mean anything (a malformed `required`, an unknown wave, a
missing `main`) is bad input instead: exit 2, nothing written. See docs/gate.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from integrator import trailers
from lanes import claims, git, state
from lanes.config import Config
from lanes.discover import ManifestSurface
from lanes.errors import BadInput, LanesError
from lanes.guard import branch_violations
from lanes.surfaces import manifest as manifest_mod
from lanes.surfaces import required as required_mod
from lanes.surfaces import version as version_mod
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


Status = Literal["pass", "fail", "off", "none"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool  # False exactly when status is "fail"
    detail: str
    status: Status = "pass"


def _pass(name: str, detail: str) -> Check:
    return Check(name, True, detail, "pass")


def _fail(name: str, detail: str) -> Check:
    return Check(name, False, detail, "fail")


def _not_checked(name: str, status: Literal["off", "none"], why: str) -> Check:
    """A check with nothing to check: its surface is switched off, or absent. Said as
    such, never as a pass."""
    return Check(name, True, why, status)


@dataclass(frozen=True)
class GateReport:
    ok: bool
    checks: list[Check]
    next: list[str]
    main: str  # the commit of main that was checked
    waves: list[str] = field(default_factory=list)
    surfaces: list[dict[str, object]] = field(default_factory=list)  # what was checked, from where
    warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]


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
    head = git.rev_parse(cfg.main_checkout, cfg.main)
    if head is None:
        raise BadInput(
            "no-main",
            f"branch {cfg.main!r} has no commit in this repository",
            hint="set `main` in the configuration to the branch that deploys",
        )
    waves = _waves(cfg, wave)
    surfaces = cfg.surfaces  # discovered on main's tree where not written
    tree = _Tree(cfg.main_checkout, head)
    tree.fetch(_paths_to_read(cfg, tree))

    checks = [
        *_manifest_checks(cfg, tree, surfaces.manifest),
        _versions_agree(cfg, tree),
    ]
    chain_check, commands, warnings = _deploy_chain(cfg, tree, head)
    checks += [
        chain_check,
        _numbers_unique(cfg, tree),
        _wave_integrated(cfg, head, waves),
        _main_linear(cfg, head, waves, wave),
    ]
    ok = all(c.status != "fail" for c in checks)
    report = GateReport(
        ok,
        checks,
        commands if ok else [],
        head,
        waves,
        surfaces.describe(),
        warnings if ok else [],
    )
    if wave is not None:
        claims.ledger(cfg, wave).append("verify", ok=ok, failed=report.failed, main=head)
    return report


def _waves(cfg: Config, wave: str | None) -> list[str]:
    if wave is None:
        return state.waves(cfg)
    return [state.known_wave(cfg, wave, "; or run lanes verify without WAVE")]


def _paths_to_read(cfg: Config, tree: _Tree) -> list[str]:
    s = cfg.surfaces
    paths: list[str] = [s.manifest.path] if s.manifest.active else []
    if s.manifest.required is not None:
        paths.append(s.manifest.required.file)
    paths += s.version_files
    if s.deploy.status != "off":
        paths += _workflow_paths(tree)
    return paths


def _workflow_paths(tree: _Tree) -> list[str]:
    names = tree.files(wf.WORKFLOW_DIR) or []
    return [f"{wf.WORKFLOW_DIR}/{n}" for n in sorted(names) if n.endswith(wf.SUFFIXES)]


# -- manifest (RC3) --------------------------------------------------------------------------


def _manifest_checks(cfg: Config, tree: _Tree, m: ManifestSurface) -> list[Check]:
    names = ("manifest-required", "manifest-entries-exist")
    if m.status == "off":
        return [_not_checked(n, "off", f"switched off: {m.origin}") for n in names]
    if m.status == "none" and m.required_status in ("none", "off"):
        why = f"this repository has no boot manifest ({m.origin})"
        return [_not_checked(n, "none", why) for n in names]
    if m.status == "none":  # a schema guard requires migrations, and no manifest allows them
        return [
            _fail(
                names[0],
                f"no boot manifest was found ({m.origin}), but {m.required_origin}: every "
                "migration it requires is missing at boot (RC3); restore the manifest, or "
                "name it in [manifest] path",
            ),
            _not_checked(names[1], "none", f"no boot manifest ({m.origin})"),
        ]
    if m.status == "ambiguous":
        return [_fail(n, f"which manifest to check is not known: {m.origin}") for n in names]
    text = tree.text(m.path)
    entries = manifest_mod.entries(text) if text is not None else None  # None: no file
    return [
        _required_check(cfg, tree, m, entries),
        _entries_exist(cfg, tree, m.path, entries),
    ]


def _required_check(
    cfg: Config, tree: _Tree, m: ManifestSurface, entries: list[str] | None
) -> Check:
    name, spec, manifest = "manifest-required", m.required, m.path
    if m.required_status == "ambiguous":
        return _fail(
            name, f"which required-migrations list to check is not known: {m.required_origin}"
        )
    if spec is None:
        return _not_checked(
            name,
            "none",
            f"no required-migrations list to check against ({m.required_origin}); name it in "
            "[manifest] required to prove RC3",
        )
    source = tree.text(spec.file)
    if source is None:
        return _fail(
            name,
            f"{spec.file} (the required list, {m.required_origin}) is not in {cfg.main}'s tree",
        )
    try:
        needed = list(dict.fromkeys(required_mod.read(spec, source)))
    except LanesError as exc:
        return _fail(name, exc.message)
    if not needed:  # an empty list proves nothing: say so, never pass on it
        return _fail(
            name,
            f"the required-migrations list {spec} is empty, so nothing proves the manifest "
            "against RC3; if this project really requires none, write [manifest] required = "
            '"" in lanes.toml (the check is then `none`)',
        )
    have = set(entries or ())
    missing = [r for r in needed if r not in have]
    if entries is None:
        return _fail(
            name,
            f"the manifest {manifest} is not in {cfg.main}'s tree: all {len(missing)} "
            f"required migrations ({spec}) are missing: {', '.join(missing)}",
        )
    if missing:
        empty = " (the manifest is empty)" if not entries else ""
        return _fail(
            name,
            f"{manifest} lacks {len(missing)} of the {len(needed)} required "
            f"migrations ({spec}){empty}: {', '.join(missing)}" + _how_to_add(cfg, tree, missing),
        )
    return _pass(name, f"all {len(needed)} required migrations ({spec}) are in {manifest}")


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
        return _fail(name, f"the manifest {manifest} is not in {cfg.main}'s tree")
    if files is None:
        return _fail(name, f"entries_dir {entries_dir} is not a directory in {cfg.main}'s tree")
    unique = list(dict.fromkeys(entries))
    present = set(files)
    missing = [e for e in unique if e not in present]
    if missing:
        return _fail(
            name,
            f"{manifest} names {len(missing)} file(s) not in {entries_dir}: "
            f"{', '.join(missing)}; add the migration files or remove the entries",
        )
    if not unique:
        return _pass(name, f"{manifest} has no entries")
    return _pass(name, f"all {len(unique)} entries of {manifest} are files in {entries_dir}")


def _numbers_unique(cfg: Config, tree: _Tree) -> Check:
    name = "migration-numbers-unique"
    m = cfg.surfaces.manifest
    if m.status in ("off", "none"):
        return _not_checked(name, m.status, f"no migrations folder to check ({m.origin})")
    if m.status == "ambiguous":
        return _fail(name, f"which migrations folder to check is not known: {m.origin}")
    entries_dir = cfg.entries_dir()
    files = tree.files(entries_dir)
    if files is None:
        return _fail(name, f"entries_dir {entries_dir} is not a directory in main")
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
        return _fail(
            name,
            f"migrations in {entries_dir} share a number: "
            + "; ".join(parts)
            + "; renumber the later one(s)",
        )
    count = sum(len(s) for s in stems.values())
    return _pass(name, f"{count} numbered migrations in {entries_dir}, no number twice")


# -- versions -------------------------------------------------------------------------------


def _versions_agree(cfg: Config, tree: _Tree) -> Check:
    name = "versions-agree"
    v = cfg.surfaces.version
    if v.status in ("off", "none"):
        return _not_checked(name, "none" if v.status == "none" else "off", v.origin)
    found: list[tuple[str, str]] = []
    problems: list[str] = []
    for path in v.files:
        text = tree.text(path)
        if text is None:
            problems.append(f"{path} is not in main's tree")
            continue
        try:
            found.append((path, version_mod.read(path, text)))
        except LanesError as exc:
            problems.append(exc.message)
    if found:
        first_path, first = found[0]
        for path, version in found[1:]:
            if version != first:
                problems.append(f"{first_path} has {first} but {path} has {version}")
    origin = "" if v.status == "configured" else f" (discovered: {v.origin})"
    if problems:
        return _fail(name, "; ".join(problems) + origin)
    return _pass(name, f"{', '.join(p for p, _ in found)} all at {found[0][1]}{origin}")


# -- the deploy chain (RC4) ------------------------------------------------------------------


def _deploy_chain(cfg: Config, tree: _Tree, head: str) -> tuple[Check, list[str], list[str]]:
    """The check, the commands that deploy by direct dispatch in the order to run them,
    and the warnings that go with them."""
    name = "deploy-chain"
    d = cfg.surfaces.deploy
    if d.status == "off":
        return _not_checked(name, "off", f"switched off: {d.origin}"), [], []
    flows = wf.parse_all({p: tree.text(p) or "" for p in _workflow_paths(tree)})
    if d.status == "ambiguous":
        return _fail(name, f"which workflow deploys is not known: {d.origin}"), [], []
    if d.status == "none":
        followers = [w.path for w in flows if w.is_child]
        if followers:  # a chain with no deploy to hang from is not "no surface"
            return (
                _fail(
                    name,
                    f"{', '.join(followers)} follow(s) workflows by workflow_run, but no deploy "
                    f"workflow was found ({d.origin}); name it in [deploy] workflow",
                ),
                [],
                [],
            )
        return (
            _not_checked(name, "none", f"this repository has no deploy workflow ({d.origin})"),
            [],
            [],
        )
    deploy_path = PurePosixPath(d.workflow).as_posix()  # ./.github/... is the same file
    problems = wf.chain_problems(flows, deploy_path)
    deploy = next((w for w in flows if w.path == deploy_path), None)
    if problems or deploy is None:
        return _fail(name, "; ".join(problems)), [], []
    chained = wf.chain(deploy, flows)
    children = sum(1 for w in flows if w.is_child)
    origin = "" if d.status == "configured" else f" (discovered: {d.origin})"
    detail = (
        f"{deploy_path}{origin} and its {len(chained)} chained workflow(s)"
        + (f" ({', '.join(w.display_name for w in chained)})" if chained else "")
        + f" run under a hand dispatch; {children} workflow_run workflow(s) checked"
    )
    commands, warnings = _next_steps(cfg, deploy, flows, head)
    return _pass(name, detail), commands, warnings


def _next_steps(
    cfg: Config, deploy: wf.Workflow, flows: list[wf.Workflow], head: str
) -> tuple[list[str], list[str]]:
    """What a person runs to deploy what was checked, in order: the push of main when the
    remote is behind, the deploy's dispatch, a wait for that run, then each chained
    workflow (they are dispatched directly, never left to a workflow_run guard: RC4)."""
    import shlex

    commands: list[str] = []
    warnings: list[str] = []
    upstream = git.upstream(cfg.main_checkout, cfg.main)
    on_push = wf.runs_on_push_to(deploy, cfg.main)
    if upstream is None:
        warnings.append(
            f"{cfg.main} has no upstream branch: `gh workflow run` deploys the remote's "
            f"{cfg.main}, so push {head[:12]} there first"
        )
    else:
        remote, branch, remote_head = upstream
        if remote_head != head:
            commands.append(
                f"git push {shlex.quote(remote)} {shlex.quote(cfg.main)}:{shlex.quote(branch)}"
            )
    dispatches = wf.dispatch_commands(deploy, flows, cfg.main)
    if on_push and commands:
        # The push deploys: dispatching the deploy too would deploy twice. Wait for the
        # push's own run instead, then dispatch the chain directly (RC4).
        warnings.append(
            f"{deploy.path} also runs on a push to {cfg.main}: the push below deploys, so "
            "next waits for that run instead of dispatching the deploy a second time"
        )
        commands.append(wf.watch_command(deploy, cfg.main, event="push"))
        return commands + dispatches[1:], warnings
    if on_push:
        warnings.append(
            f"{deploy.path} also runs on a push to {cfg.main}: "
            + (
                "if you push before dispatching, the push deploys and the dispatch deploys "
                "again; dispatch only what the push did not start"
                if upstream is None
                else "the push that brought this commit may already have deployed it; "
                "check `gh run list` before dispatching"
            )
        )
    commands.append(dispatches[0])
    commands.append(wf.watch_command(deploy, cfg.main))
    return commands + dispatches[1:], warnings


# -- the wave --------------------------------------------------------------------------------


def landed_lanes(cfg: Config, head: str, wave: str) -> set[str]:
    """Lanes of `wave` whose trailers are on main: integrated, whatever the ledger says."""
    return {c.lane for c in trailers.landed(cfg.main_checkout, head, wave) if c.lane}


def _wave_integrated(cfg: Config, head: str, waves: list[str]) -> Check:
    name = "wave-integrated"
    if not waves:
        return _not_checked(name, "none", "no wave has a ledger yet")
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
        # Integrated is what main holds: a row no landing on main backs (forged by someone
        # who can push the ledger, written by hand, or main rewound) leaves work out.
        phantom = sorted(
            ln for ln, h in hist.items() if h.state == "integrated" and ln not in landed
        )
        if phantom:
            problems.append(
                f"wave {w}: the ledger says {', '.join(phantom)} integrated, but {cfg.main} holds "
                "no landing of it (no Lanes-* trailers): its work is not in this deploy (a row "
                f"written by hand or forged, or {cfg.main} rewound); see lanes ledger {w}"
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
        integrated = sorted(landed)
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
        return _fail(name, "; ".join(problems))
    return _pass(name, "; ".join(summary))


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
        return _not_checked(
            name, "none", "no wave has a ledger yet, so there is no base to check from"
        )
    bases = [b for b in (wave_base(cfg, w) for w in waves) if b]
    base = git.merge_base_all(cfg.main_checkout, bases)
    which = f"wave {asked}'s base" if asked else "the earliest base of waves " + ", ".join(waves)
    if base is None:
        return _not_checked(name, "none", f"no lane of {', '.join(waves)} recorded a base")
    merges = git.merge_commits(cfg.main_checkout, base, head)
    if merges:
        listed = "; ".join(f"{sha[:12]} {subject!r}" for sha, subject in merges)
        return _fail(
            name,
            f"{cfg.main} has {len(merges)} merge commit(s) since {base[:12]} ({which}): "
            f"{listed}; replace them with their commits rebased onto {cfg.main} "
            "(the integrator never merges)",
        )
    return _pass(name, f"no merge commit on {cfg.main} since {base[:12]} ({which})")
