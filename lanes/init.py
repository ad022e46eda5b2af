"""`lanes init`: a commented lanes.toml holding what discovery finds; the inbox git-ignored.

It runs the discovery every command runs (lanes/discover.py), on the main checkout's files
as they are on disk, and writes each surface it found as a section saying how it was found.
An ambiguous surface is written commented out with its candidates, to pick one; a surface
the repository lacks is written commented out too, so the file shows what was looked for.
The flags are validated by the configuration's own model, and everything is checked before
anything is written: a refusal leaves the checkout as it was.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lanes import discover, git
from lanes.config import Config, Settings, settings_from, tool_lanes
from lanes.errors import BadInput

if TYPE_CHECKING:
    from lanes.hooks import SettingsPlan, SettingsResult

HEADER = """\
# lanes configuration, written by `lanes init` (docs/configuration.md lists every key).
# Every key is optional. A contended surface whose section ([manifest], [version],
# [deploy]) is left out is discovered again by every command and guarded as if written;
# `enabled = false` in a section switches its surface off on purpose.
"""


@dataclass(frozen=True)
class InitResult:
    config_path: str
    gitignore: str
    version_files: list[str] = field(default_factory=list)
    deploy_workflow: str | None = None
    manifest: str | None = None
    required: str | None = None  # FILE:NAME of the required-migrations list, if found
    surfaces: list[dict[str, object]] = field(default_factory=list)  # Surfaces.describe()
    discovered_in: str = ""  # where discovery looked
    config_text: str = ""  # the lanes.toml written (or, with dry_run, that would be)
    inbox_ignored_by: str | None = None  # the rule that already ignored the inbox, if any
    gitignore_added: bool = False  # init appended the inbox to .gitignore (or would)
    dry_run: bool = False
    # --claude-code: the hooks written into .claude/settings.json (docs/claude-code.md), and
    # whether the configuration already there was kept (then only the hooks are written)
    claude_settings: SettingsResult | None = None
    config_kept: bool = False


def init(
    cwd: Path,
    force: bool = False,
    *,
    project: str | None = None,
    main: str | None = None,
    worktree_root: str | None = None,
    dry_run: bool = False,
    claude_code: bool = False,
) -> InitResult:
    """Discover the surfaces of the repository around `cwd` and write its lanes.toml (with
    `dry_run`, only say what would be written). Everything is checked first.

    With `claude_code`, also write lanes' Claude Code hooks into .claude/settings.json; in a
    repository lanes is configured in already (and without `force` or flags for the new
    configuration), only the hooks."""
    where = git.locate(cwd)
    root = where.main_checkout
    target, gitignore = root / "lanes.toml", root / ".gitignore"
    settings = _settings(root, project, main, worktree_root)
    hooks_plan = None
    if claude_code:
        from lanes import hooks

        hooks_plan = hooks.plan_hooks(root)  # a settings.json lanes cannot merge: exit 2 now
        flags = (project, main, worktree_root) != (None, None, None)
        if not force and not flags and _configured(root, target):
            return _hooks_only(target, gitignore, hooks_plan, dry_run)
    existing_ignore = _check_writable(target, gitignore)
    _check_unconfigured(root, target, force)
    cfg = Config(settings=settings, main_checkout=root, common_dir=where.common_dir, source="init")
    surfaces = discover.resolve_on_disk(cfg)
    text = render(settings, surfaces)
    settings_from(tomllib.loads(text), "lanes.toml")  # what we write must read back
    inbox = settings.inbox.strip("/")
    ignored_by = git.ignored_by(root, f"{inbox}/x")  # any file in it: is the folder ignored?
    if not dry_run:
        tmp = target.with_name(f".lanes.toml.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)  # whole or not at all
        if ignored_by is None:
            _append_line(gitignore, existing_ignore, f"/{inbox}/")
    result = _result(target, gitignore, surfaces, text, ignored_by, dry_run)
    if hooks_plan is None:
        return result
    return dataclasses.replace(result, claude_settings=_write_hooks(hooks_plan, dry_run))


def _write_hooks(plan: SettingsPlan, dry_run: bool) -> SettingsResult:
    from lanes import hooks

    if dry_run:
        return dataclasses.replace(plan.result, dry_run=True)
    return hooks.write_hooks(plan)


def _hooks_only(target: Path, gitignore: Path, plan: SettingsPlan, dry_run: bool) -> InitResult:
    """`lanes init --claude-code` where lanes is configured already: the configuration is
    kept as it is, and only the hooks are written."""
    return InitResult(
        config_path=str(target),
        gitignore=str(gitignore),
        dry_run=dry_run,
        claude_settings=_write_hooks(plan, dry_run),
        config_kept=True,
    )


def _configured(root: Path, target: Path) -> bool:
    """A lanes.toml, or [tool.lanes] in pyproject.toml (what _check_unconfigured refuses)."""
    return target.exists() or _configured_in_pyproject(root / "pyproject.toml")


def _result(
    target: Path,
    gitignore: Path,
    surfaces: discover.Surfaces,
    text: str,
    ignored_by: str | None,
    dry_run: bool,
) -> InitResult:
    m, v, d = surfaces.manifest, surfaces.version, surfaces.deploy
    return InitResult(
        config_path=str(target),
        gitignore=str(gitignore),
        version_files=list(v.files) if v.active else [],
        deploy_workflow=d.workflow if d.active else None,
        manifest=m.path if m.active else None,
        required=str(m.required) if m.active and m.required else None,
        surfaces=surfaces.describe(),
        discovered_in=surfaces.source,
        config_text=text,
        inbox_ignored_by=ignored_by,
        gitignore_added=ignored_by is None,
        dry_run=dry_run,
    )


# -- checks made before anything is written --------------------------------------------------


def _settings(
    root: Path, project: str | None, main: str | None, worktree_root: str | None
) -> Settings:
    """The top-level settings init writes: the flags, validated as lanes.toml is (exit 2
    naming the rule), else the checkout's directory name, its branch and the defaults."""
    on = git.head_branch(root)
    raw = {
        "project": project or _project_name(root.name),
        "main": main if main is not None else (on.removeprefix("refs/heads/") if on else "main"),
        "worktree_root": worktree_root if worktree_root is not None else Settings().worktree_root,
    }
    return settings_from(raw, "lanes init")


def _check_writable(target: Path, gitignore: Path) -> str:
    """Refuse a folder, or a symbolic link, where a file is written; the .gitignore text.
    A linked .gitignore is refused, not written through: the link may lead anywhere (a
    dotfile in the home folder), and git itself no longer reads a .gitignore that is a
    symbolic link (since 2.32), so a line appended there would ignore nothing."""
    for path in (target, gitignore):
        if path.is_symlink():
            raise BadInput(
                "bad-config",
                f"{path} is a symbolic link (to {os.readlink(path)}); lanes init writes "
                "only regular files, and git does not read a linked .gitignore",
                hint=f"replace {path.name} with a regular file (copy its target's lines in)",
            )
        if os.path.lexists(path) and not path.is_file():
            raise BadInput(
                "bad-config", f"{path} is not a regular file", hint=f"move {path.name} away"
            )
    try:
        return gitignore.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(
            "bad-config", f"cannot read {gitignore} as text: {exc}", hint="fix it"
        ) from None


def _check_unconfigured(root: Path, target: Path, force: bool) -> None:
    if force:
        return
    if target.exists():
        raise BadInput(
            "config-exists",
            f"{target} already exists",
            hint="edit it, or run lanes init --force to write it again",
        )
    if _configured_in_pyproject(root / "pyproject.toml"):
        raise BadInput(
            "config-exists",
            "pyproject.toml already configures lanes in [tool.lanes]; a lanes.toml would "
            "replace it whole",
            hint="edit [tool.lanes], or run lanes init --force to write lanes.toml anyway",
        )


def _configured_in_pyproject(pyproject: Path) -> bool:
    try:
        return tool_lanes(pyproject) is not None
    except BadInput:
        return False  # a broken pyproject.toml: lanes.toml will not read it anyway


def _project_name(directory: str) -> str:
    """The checkout's directory name, made a valid project name (no spaces or slashes)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", directory).strip(".-_")
    return re.sub(r"[.]{2,}", ".", name)[:64] or "project"


def _append_line(gitignore: Path, existing: str, line: str) -> None:
    sep = "" if not existing or existing.endswith("\n") else "\n"
    with open(gitignore, "a", encoding="utf-8") as fh:  # appended: a kill never truncates it
        fh.write(f"{sep}{line}\n")


# -- the text ----------------------------------------------------------------------------------


def render(settings: Settings, surfaces: discover.Surfaces) -> str:
    """The commented lanes.toml for `settings` (top-level keys) and what was discovered."""
    s = settings
    lines = [
        HEADER.rstrip("\n"),
        f"# Surfaces discovered in {_comment(surfaces.source)}.",
        f"project = {_toml(s.project)}  # worktrees: {{worktree_root}}/{{project}}-{{wave}}-{{lane}}",
        f"main = {_toml(s.main)}  # the integration branch",
        f"worktree_root = {_toml(s.worktree_root)}",
        f"inbox = {_toml(s.inbox)}  # claims, fragments and ledgers; git-ignored",
        f"stale_after = {_toml(s.stale_after)}  # gc reaps a claim silent for this long",
        'test_command = ""  # run by the integrator after each lane, e.g. "make test"',
        "protected = []  # more globs no lane may edit directly",
        "",
    ]
    lines += _manifest_lines(surfaces.manifest)
    lines += _version_lines(surfaces.version)
    lines += _deploy_lines(surfaces.deploy)
    return "\n".join(lines)


def _manifest_lines(m: discover.ManifestSurface) -> list[str]:
    if m.status == "ambiguous":
        return [
            f"# {_comment(m.origin)}",
            "# Pick the boot manifest: uncomment [manifest], one path line and entries_dir.",
            "# [manifest]",
            *(f"# path = {_toml(p)}" for p in m.candidates),
            f"# entries_dir = {_toml(posixpath.dirname(m.candidates[0]))}",
            "",
        ]
    if not m.active:
        return [
            f"# No boot manifest: {_comment(m.origin)}.",
            "# [manifest]",
            '# path = "scripts/migrations/boot_manifest.txt"',
            "",
        ]
    if m.required:
        required = [
            f"# required: {_comment(m.required_origin)} (read with ast, never run)",
            f"required = {_toml(str(m.required))}",
        ]
    else:
        required = [
            f"# required: {_comment(m.required_origin)}; FILE:NAME of a list, or a text file",
            '# required = "scripts/schema_guard.py:REQUIRED_MIGRATIONS"',
        ]
    return [
        f"# The boot allowlist of migrations; discovered: {_comment(m.origin)}.",
        "[manifest]",
        f"path = {_toml(m.path)}",
        f"entries_dir = {_toml(m.entries_dir)}",
        *required,
        "",
    ]


def _version_lines(v: discover.VersionSurface) -> list[str]:
    unread = [f"# not read as a version: {_comment(f)}: {_comment(why)}" for f, why in v.unreadable]
    if not v.active:
        return [
            f"# No version file: {_comment(v.origin)}.",
            *unread,
            "# [version]",
            '# files = ["pyproject.toml"]  # each holds the same version',
            "",
        ]
    return [
        f"# The version files; discovered: {_comment(v.origin)}.",
        *unread,
        "[version]",
        f"files = [{', '.join(map(_toml, v.files))}]  # each holds the same version",
        "",
    ]


def _deploy_lines(d: discover.DeploySurface) -> list[str]:
    if d.status == "ambiguous":
        return [
            f"# {_comment(d.origin)}.",
            "# Pick the deploy workflow: uncomment [deploy] and the workflow line to dispatch.",
            "# [deploy]",
            *(f"# workflow = {_toml(p)}" for p in d.candidates),
            "",
        ]
    if not d.active:
        return [
            f"# No deploy workflow: {_comment(d.origin)}.",
            "# [deploy]",
            '# workflow = ".github/workflows/deploy.yml"',
            "",
        ]
    return [
        f"# The workflow to dispatch; discovered: {_comment(d.origin)}.",
        "[deploy]",
        f"workflow = {_toml(d.workflow)}",
        "",
    ]


def _toml(value: str) -> str:
    """A TOML string, escaped (a branch or file name may hold a quote, a backslash, 🚀)."""
    import tomlkit

    return str(tomlkit.string(value).as_string())


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _comment(text: str) -> str:
    """Text made safe in a TOML comment, which ends at a newline and refuses control
    characters (a file name may hold either)."""
    return _CONTROL.sub("?", text)
