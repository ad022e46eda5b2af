"""The Config model: defaults, lanes.toml or [tool.lanes], and where things live."""

from __future__ import annotations

import json
import os
import re
import tomllib
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lanes import git
from lanes.errors import BadInput
from lanes.names import check_lane, check_wave

if TYPE_CHECKING:
    from lanes.discover import Surfaces

_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def parse_duration(text: str) -> int:
    """'30m' -> 1800. Units s, m, h, d; a bare number means seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 2h or 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _inside(value: str) -> str:
    """A path in the repository: relative, without '..', not empty, written as git writes
    it (`./server.json` and `scripts//x` are the paths `server.json` and `scripts/x`, or a
    guard comparing with git's paths would never match them)."""
    parts = PurePosixPath(value).parts
    if not value.strip() or PurePosixPath(value).is_absolute() or ".." in parts or "\\" in value:
        raise ValueError(f"{value!r} is not a path inside the repository, like scripts/x.txt")
    normal = PurePosixPath(value).as_posix()
    if normal in (".", "") or value.endswith("/"):
        raise ValueError(f"{value!r} is not a file path inside the repository, like scripts/x.txt")
    return normal


class _Surface(_Section):
    """A contended surface's section: written means guarded; `enabled = false` switches
    it off on purpose (the gate shows it as off); absent means discovered."""

    enabled: bool = True


class ManifestConfig(_Surface):
    path: str = ""
    entries_dir: str = ""
    required: str | None = None  # None: discovered; "": this repository has no such list

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _inside(value) if value else value

    @field_validator("entries_dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        return PurePosixPath(_inside(value.rstrip("/"))).as_posix() if value.strip("/") else ""

    @model_validator(mode="after")
    def _named(self) -> ManifestConfig:
        if self.enabled and not self.path:
            raise ValueError("[manifest] needs path (the boot manifest), or enabled = false")
        return self


class VersionConfig(_Surface):
    files: list[str] = []

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_inside(v) for v in value))

    @model_validator(mode="after")
    def _named(self) -> VersionConfig:
        if self.enabled and not self.files:
            raise ValueError("[version] needs files (each holds the version), or enabled = false")
        return self


class DeployConfig(_Surface):
    workflow: str = ""

    @field_validator("workflow")
    @classmethod
    def _workflow(cls, value: str) -> str:
        return _inside(value) if value else value

    @model_validator(mode="after")
    def _named(self) -> DeployConfig:
        if self.enabled and not self.workflow:
            raise ValueError("[deploy] needs workflow (the file to dispatch), or enabled = false")
        return self


_GLOB = re.compile(r"[*?\[]")
_PORT_RANGE = re.compile(r"\s*(\d{1,5})\s*-\s*(\d{1,5})\s*")


def _relative_pattern(value: str, what: str) -> str:
    """A path or glob under the main checkout's root, as [setup] names them: relative,
    without '..' or a backslash, not inside .git (`./x` is `x`; a trailing / is kept)."""
    text = value.strip()
    path = PurePosixPath(text)
    if (
        not text
        or text.startswith("/")
        or not path.parts
        or ".." in path.parts
        or "\\" in text
        or "\0" in text
        or path.parts[0] == ".git"
    ):
        raise ValueError(
            f"{value!r} is not {what} inside the repository (relative to its root, without "
            "'..', not absolute), like .env or config/local"
        )
    return path.as_posix() + ("/" if text.endswith("/") else "")


class SetupConfig(_Section):
    """What every new lane worktree gets before its agent starts (docs/setup.md)."""

    # git-ignored files or folders (globs allowed), from the root; `copy` in the file (the
    # name would shadow pydantic's BaseModel.copy)
    copy_: list[str] = Field([], alias="copy")
    link: list[str] = []  # git-ignored folders shared by an absolute symlink
    commands: list[str] = []  # run in the new worktree, in order, through /bin/sh -c
    ports: int = 0  # ports reserved per lane: LANES_PORT .. LANES_PORT+ports-1
    port_range: str = "20000-29999"

    @field_validator("copy_")
    @classmethod
    def _copy(cls, value: list[str]) -> list[str]:
        found = []
        for item in value:
            if item.strip().startswith("!"):
                raise ValueError(
                    f"{item!r}: a negation has no meaning here; write negations in "
                    ".worktreeinclude (one gitignore pattern a line)"
                )
            found.append(_relative_pattern(item, "a path"))
        return list(dict.fromkeys(found))

    @field_validator("link")
    @classmethod
    def _link(cls, value: list[str]) -> list[str]:
        found = []
        for item in value:
            folder = _relative_pattern(item, "a folder").rstrip("/")
            if _GLOB.search(folder) or item.strip().startswith("!"):
                raise ValueError(f"{item!r} is not a folder: name it without * ? [ or !")
            found.append(folder)
        return list(dict.fromkeys(found))

    @field_validator("commands")
    @classmethod
    def _commands(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip() or "\0" in item:
                raise ValueError(f'{item!r} is not a command, like "uv sync --frozen"')
        return value

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            shown = json.dumps(value, default=str)
            raise ValueError(
                f"must be a whole number, 0 or more (ports reserved per lane; 0: none), not {shown}"
            )
        return value

    @field_validator("port_range")
    @classmethod
    def _port_range(cls, value: str) -> str:
        match = _PORT_RANGE.fullmatch(value)
        low, high = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        if not match or not 1 <= low <= high <= 65535:
            raise ValueError(
                f"{value!r} is not a range of ports LOW-HIGH, 1 <= LOW <= HIGH <= 65535, "
                "like 20000-29999"
            )
        return f"{low}-{high}"

    @property
    def port_bounds(self) -> tuple[int, int]:
        """The first and the last port of `port_range`."""
        low, _, high = self.port_range.partition("-")
        return int(low), int(high)

    @model_validator(mode="after")
    def _fits(self) -> SetupConfig:
        both = sorted(set(self.link) & {c.rstrip("/") for c in self.copy_})
        if both:
            raise ValueError(
                f"link {both[0]!r} is also in copy: a folder is either copied or linked"
            )
        low, high = self.port_bounds
        if self.ports > high - low + 1:
            raise ValueError(
                f"ports = {self.ports} is more than port_range {self.port_range} holds "
                f"({high - low + 1} ports): widen port_range or lower ports"
            )
        return self


class Settings(_Section):
    """Exactly what lanes.toml may say (unknown keys are refused)."""

    project: str = ""
    main: str = "main"
    worktree_root: str = "/tmp"
    inbox: str = "tools/offline/_inbox"
    stale_after: str = "30m"
    test_command: str = ""
    protected: list[str] = []
    land: Literal["replay", "squash"] = "replay"
    batch: int = 32  # lanes tested together by one test_command run (1: each alone)
    test_jobs: int = 1  # test runs at once, each in a scratch worktree of its own
    remote: str = ""  # "" = one machine (the inbox); a git remote's name: coordinate there
    manifest: ManifestConfig | None = None
    version: VersionConfig | None = None
    deploy: DeployConfig | None = None
    setup: SetupConfig = SetupConfig()

    @field_validator("stale_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a bare number means seconds
        if isinstance(value, str) and parse_duration(value) <= 0:
            raise ValueError(f"{value!r} would make every claim stale at once; use e.g. 30m")
        return value

    @field_validator("batch", "test_jobs", mode="before")
    @classmethod
    def _count(cls, value: Any, info: ValidationInfo) -> Any:
        what = {
            "batch": "the most lanes one test_command run tests together (1 tests each lane "
            "alone; the default is 32)",
            "test_jobs": "how many test_command runs go at once, each in a scratch worktree "
            "of its own (the default is 1)",
        }[str(info.field_name)]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            shown = json.dumps(value, default=str)  # as TOML writes it: true, "3", 2.5
            raise ValueError(f"must be a whole number, 1 or more: {what}; not {shown}")
        return value

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        # It becomes part of a directory name under worktree_root: no separators.
        if value and (not _PROJECT.fullmatch(value) or ".." in value):
            raise ValueError(
                f"{value!r} is not a project name: letters, digits, '.', '_' and '-', "
                "like jpcite (or leave it out: the main checkout's directory name)"
            )
        return value

    @field_validator("main")
    @classmethod
    def _branch(cls, value: str) -> str:
        if not value or value.startswith("-") or ".." in value or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not a branch name, like main")
        return value

    @field_validator("worktree_root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute():
            raise ValueError(f"{value!r} is not an absolute path, like /tmp")
        return value

    @field_validator("inbox")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or not parts or parts[0] == ".git":
            raise ValueError(
                "inbox must be a folder inside the main checkout (not the checkout itself, "
                "not .git), like tools/offline/_inbox"
            )
        return value


class Config(BaseModel):
    """Settings resolved against one repository."""

    model_config = ConfigDict(frozen=True)

    settings: Settings
    main_checkout: Path
    common_dir: Path
    source: str  # "lanes.toml", "pyproject.toml" or "defaults"

    @property
    def project(self) -> str:
        return self.settings.project or self.main_checkout.name

    @property
    def main(self) -> str:
        return self.settings.main

    @property
    def stale_after_seconds(self) -> int:
        return parse_duration(self.settings.stale_after)

    @property
    def inbox(self) -> Path:
        return self.main_checkout / self.settings.inbox

    def wave_dir(self, wave: str) -> Path:
        return self.inbox / check_wave(wave)

    def claim_dir(self, wave: str, lane: str) -> Path:
        return self.wave_dir(wave) / check_lane(lane)

    def ledger_path(self, wave: str) -> Path:
        return self.wave_dir(wave) / "AGENT_LEDGER.md"

    def worktree_path(self, wave: str, lane: str) -> Path:
        return Path(self.settings.worktree_root) / f"{self.project}-{wave}-{lane}"

    @staticmethod
    def branch(wave: str, lane: str) -> str:
        return f"lanes/{wave}/{lane}"

    @property
    def state_dir(self) -> Path:
        """Inside the shared git dir: locks and anchors an editor will not stumble on."""
        return self.common_dir / "lanes"

    @cached_property
    def surfaces(self) -> Surfaces:
        """The contended surfaces, written or discovered: computed once, when first asked
        (so `lanes heartbeat` and `lanes --help` never pay for discovery)."""
        from lanes import discover

        return discover.resolve(self)

    def entries_dir(self) -> str:
        """The folder manifest entries name files in ('' for the top, or no manifest)."""
        return self.surfaces.manifest.entries_dir

    def contended_surfaces(self) -> list[str]:
        return self.surfaces.contended()


_SECTIONS: dict[str, type[_Section]] = {
    "manifest": ManifestConfig,
    "version": VersionConfig,
    "deploy": DeployConfig,
    "setup": SetupConfig,
}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():  # a directory, a dangling link, /dev/null: not silently skipped
        raise BadInput(
            "bad-config",
            f"{path} is not a regular file",
            hint=f"make {path.name} a TOML file, or remove it",
        )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(
            "bad-config",
            f"{path.name} is not valid TOML (UTF-8): {exc}",
            hint=f"fix the syntax of {path}",
        ) from None
    except OSError as exc:
        raise BadInput(
            "bad-config", f"cannot read {path}: {exc.strerror}", hint=f"check {path}"
        ) from None


def settings_from(raw: dict[str, Any], source: str) -> Settings:
    """Validate a configuration table; exit 2 naming every bad or unknown key."""
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems, unknown = [], []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}")
                unknown.append(err["loc"])
            else:
                problems.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        hint = "see docs/configuration.md"
        if unknown:
            section = unknown[0][:-1]
            model: Any = Settings
            for name in section:  # the known keys where the unknown one was found
                model = _SECTIONS.get(str(name), model)
            where = f" in [{'.'.join(map(str, section))}]" if section else ""
            known = [f.alias or name for name, f in model.model_fields.items()]
            hint = f"known keys{where}: " + ", ".join(known) + f"; {hint}"
        raise BadInput("bad-config", f"{source}: " + "; ".join(problems), hint=hint) from None


def load(cwd: Path | None = None) -> Config:
    """Find the repository around `cwd` and read its configuration."""
    where = git.locate(cwd or Path.cwd())
    return load_at(where.main_checkout, where.common_dir)


def tool_lanes(pyproject: Path) -> Any:
    """The `[tool.lanes]` table of a pyproject.toml, or None when it has none (or no file)."""
    if not os.path.lexists(pyproject):
        return None
    tool = _read_toml(pyproject).get("tool")
    return tool.get("lanes") if isinstance(tool, dict) else None


def load_at(main_checkout: Path, common_dir: Path) -> Config:
    lanes_toml = main_checkout / "lanes.toml"
    pyproject = main_checkout / "pyproject.toml"
    if os.path.lexists(lanes_toml):
        raw, source = _read_toml(lanes_toml), "lanes.toml"
    elif (table := tool_lanes(pyproject)) is not None:
        raw, source = table, "pyproject.toml"
    else:
        raw, source = {}, "defaults"
    return Config(
        settings=settings_from(raw, source),
        main_checkout=main_checkout,
        common_dir=common_dir,
        source=source,
    )
