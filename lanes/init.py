"""`lanes init`: a commented lanes.toml filled from what the repository holds."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from lanes import git
from lanes.config import Settings, settings_from, tool_lanes
from lanes.errors import BadInput, LanesError


@dataclass(frozen=True)
class InitResult:
    config_path: str
    gitignore: str
    version_files: list[str] = field(default_factory=list)
    deploy_workflow: str | None = None
    manifest: str | None = None
    required: str | None = None  # FILE:NAME of the required-migrations list, if found


def _has_version(path: Path) -> bool:
    try:
        if path.name == "pyproject.toml":
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            return "version" in doc.get("project", {}) or "version" in doc.get("tool", {}).get(
                "poetry", {}
            )
        if path.suffix == ".json":
            return "version" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return False


def _find_required(root: Path) -> str | None:
    """FILE:NAME of a top-level list named like *REQUIRED*MIGRATION* in scripts/ (a schema
    guard's) that the gate can read, checked by the gate's own reader (ast, never run)."""
    import ast

    from lanes.surfaces import required

    for path in sorted(root.glob("scripts/**/*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            tree = ast.parse(text)
        except (OSError, SyntaxError, ValueError):
            continue
        names = [
            target.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
            and "REQUIRED" in target.id.upper()
            and "MIGRATION" in target.id.upper()
        ]
        for name in dict.fromkeys(names):
            spec = required.RequiredSpec(path.relative_to(root).as_posix(), name)
            try:
                required.read(spec, text)
            except LanesError:
                continue  # the gate could not read it either: do not offer it
            return str(spec)
    return None


def _toml(value: str) -> str:
    """A TOML string, escaped (a branch or file name may hold a quote, a backslash, 🚀)."""
    import tomlkit

    return str(tomlkit.string(value).as_string())


def _project_name(directory: str) -> str:
    """The checkout's directory name, made a valid project name (no spaces or slashes)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", directory).strip(".-_")
    return re.sub(r"[.]{2,}", ".", name)[:64] or "project"


def _configured_in_pyproject(pyproject: Path) -> bool:
    try:
        return tool_lanes(pyproject) is not None
    except BadInput:
        return False  # a broken pyproject.toml: lanes.toml will not read it anyway


def _render(root: Path, found: InitResult, main: str) -> str:
    d = Settings()
    lines = [
        "# lanes configuration (https://github.com/lanes; see docs/configuration.md).",
        "# Every key is optional; the values shown are the defaults unless noted.",
        f"project = {_toml(_project_name(root.name))}  # worktrees: {{worktree_root}}/{{project}}-{{wave}}-{{lane}}",
        f"main = {_toml(main)}  # the integration branch",
        f'worktree_root = "{d.worktree_root}"',
        f'inbox = "{d.inbox}"  # claims, fragments and ledgers; git-ignored',
        f'stale_after = "{d.stale_after}"           # gc reaps a claim silent for this long',
        'test_command = ""                # run by the integrator after each lane, e.g. "make test"',
        "protected = []                   # more globs no lane may edit directly",
        "",
    ]
    if found.manifest:
        lines += [
            "[manifest]                       # the boot allowlist of migrations",
            f"path = {_toml(found.manifest)}",
            f"entries_dir = {_toml(Path(found.manifest).parent.as_posix())}",
            f"required = {_toml(found.required)}  # FILE:NAME of a list literal, never run"
            if found.required
            else '# required = "scripts/schema_guard.py:REQUIRED_MIGRATIONS"  # FILE:NAME or a text file',
            "",
        ]
    else:
        lines += ["# [manifest]", '# path = "scripts/migrations/boot_manifest.txt"', ""]
    if found.version_files:
        lines += [
            "[version]",
            f"files = [{', '.join(map(_toml, found.version_files))}]  # each holds the same version",
            "",
        ]
    if found.deploy_workflow:
        lines += ["[deploy]", f"workflow = {_toml(found.deploy_workflow)}", ""]
    else:
        lines += ["# [deploy]", '# workflow = ".github/workflows/deploy.yml"', ""]
    return "\n".join(lines)


def init(cwd: Path, force: bool = False) -> InitResult:
    where = git.locate(cwd)
    root = where.main_checkout
    target = root / "lanes.toml"
    for path in (target, root / ".gitignore"):  # checked before anything is written
        if os.path.lexists(path) and not path.is_file():
            raise BadInput(
                "bad-config", f"{path} is not a regular file", hint=f"move {path.name} away"
            )
    try:
        existing_ignore = (root / ".gitignore").read_text(encoding="utf-8")
    except FileNotFoundError:
        existing_ignore = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(
            "bad-config", f"cannot read {root / '.gitignore'} as text: {exc}", hint="fix it"
        ) from None
    if target.exists() and not force:
        raise BadInput(
            "config-exists",
            f"{target} already exists",
            hint="edit it, or run lanes init --force to write it again",
        )
    if not force and _configured_in_pyproject(root / "pyproject.toml"):
        raise BadInput(
            "config-exists",
            "pyproject.toml already configures lanes in [tool.lanes]; a lanes.toml would "
            "replace it whole",
            hint="edit [tool.lanes], or run lanes init --force to write lanes.toml anyway",
        )
    on = git.head_branch(root)
    versions = [
        name
        for name in ("pyproject.toml", "server.json", "package.json")
        if _has_version(root / name)
    ]
    workflows = sorted((root / ".github" / "workflows").glob("*.y*ml"))
    deploy = next((w for w in workflows if w.stem.startswith("deploy")), None)
    manifests = sorted(root.glob("scripts/migrations/*manifest*.txt"))
    found = InitResult(
        required=_find_required(root) if manifests else None,
        config_path=str(target),
        gitignore=str(root / ".gitignore"),
        version_files=versions,
        deploy_workflow=deploy.relative_to(root).as_posix() if deploy else None,
        manifest=manifests[0].relative_to(root).as_posix() if manifests else None,
    )
    text = _render(root, found, on.removeprefix("refs/heads/") if on else Settings().main)
    settings_from(tomllib.loads(text), "lanes.toml")  # what we write must read back
    tmp = target.with_name(f".lanes.toml.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)  # whole or not at all
    _ignore(root / ".gitignore", existing_ignore, "/" + Settings().inbox.strip("/") + "/")
    return found


def _ignore(gitignore: Path, existing: str, pattern: str) -> None:
    if pattern in existing.splitlines():
        return
    sep = "" if not existing or existing.endswith("\n") else "\n"
    with open(gitignore, "a", encoding="utf-8") as fh:  # appended: a kill never truncates it
        fh.write(f"{sep}{pattern}\n")
