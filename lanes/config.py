"""The Config model: defaults, lanes.toml or [tool.lanes], and where things live."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from lanes import git
from lanes.errors import BadInput
from lanes.names import check_lane, check_wave

_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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


class ManifestConfig(_Section):
    path: str
    entries_dir: str = ""
    required: str = ""


class VersionConfig(_Section):
    files: list[str] = []


class DeployConfig(_Section):
    workflow: str


class Settings(_Section):
    """Exactly what lanes.toml may say (unknown keys are refused)."""

    project: str = ""
    main: str = "main"
    worktree_root: str = "/tmp"
    inbox: str = "tools/offline/_inbox"
    stale_after: str = "30m"
    test_command: str = ""
    protected: list[str] = []
    manifest: ManifestConfig | None = None
    version: VersionConfig | None = None
    deploy: DeployConfig | None = None

    @field_validator("stale_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("inbox")
    @classmethod
    def _relative(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError(
                "inbox must be a path inside the main checkout, like tools/offline/_inbox"
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

    def contended_surfaces(self) -> list[str]:
        s = self.settings
        paths = []
        if s.manifest:
            paths.append(s.manifest.path)
        if s.version:
            paths.extend(s.version.files)
        if s.deploy:
            paths.append(s.deploy.workflow)
        return paths


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(
            "bad-config", f"{path.name} is not valid TOML: {exc}", hint=f"fix the syntax of {path}"
        ) from exc


def _settings(raw: dict[str, Any], source: str) -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}")
            else:
                problems.append(f"{key}: {err['msg']}")
        raise BadInput(
            "bad-config",
            f"{source}: " + "; ".join(problems),
            hint="known keys: " + ", ".join(Settings.model_fields) + " (see docs/configuration.md)",
        ) from None


def load(cwd: Path | None = None) -> Config:
    """Find the repository around `cwd` and read its configuration."""
    where = git.locate(cwd or Path.cwd())
    return load_at(where.main_checkout, where.common_dir)


def load_at(main_checkout: Path, common_dir: Path) -> Config:
    lanes_toml = main_checkout / "lanes.toml"
    pyproject = main_checkout / "pyproject.toml"
    if lanes_toml.is_file():
        raw, source = _read_toml(lanes_toml), "lanes.toml"
    elif pyproject.is_file() and "lanes" in _read_toml(pyproject).get("tool", {}):
        raw, source = _read_toml(pyproject)["tool"]["lanes"], "pyproject.toml"
    else:
        raw, source = {}, "defaults"
    return Config(
        settings=_settings(raw, source),
        main_checkout=main_checkout,
        common_dir=common_dir,
        source=source,
    )
