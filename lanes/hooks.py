"""Claude Code's `WorktreeCreate` and `WorktreeRemove` hooks, backed by lanes claims.

Claude Code runs a command hook with one JSON document on standard input and, for
`WorktreeCreate`, takes the last non-empty line of its standard output as the worktree's
path; any non-zero exit fails the creation. `WorktreeRemove` gets the path that
`WorktreeCreate` printed, as `worktree_path`; it cannot block the removal and its output is
only logged. What was found about the contract, and where, is in docs/claude-code.md.

Here a created worktree is a lane claimed through `lanes.claims.claim` (its worktree, its
branch from main, its setup, its ledger row), and a removed one is that lane released
through `lanes.claims.release` (its uncommitted work saved in the claim directory first).
`lanes init --claude-code` writes both hooks into the repository's `.claude/settings.json`
(`plan_hooks`, then `write_hooks`).

Nothing here writes to a terminal: the document is read from a file descriptor given by
the caller, and results are returned.
"""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lanes.errors import BadInput
from lanes.names import check_agent, check_lane, check_wave

if TYPE_CHECKING:
    from lanes.claims import ClaimRecord
    from lanes.config import Config

CREATE = "WorktreeCreate"
REMOVE = "WorktreeRemove"
READ_TIMEOUT = 10.0  # seconds for the whole document to arrive (stdin may stay open)
READ_LIMIT = 1 << 20  # bytes: a hook document is a few hundred
AGENT_PREFIX = "claude-"  # agent ids this hook gives: claude-<session_id>

# The worktree's name, newest spelling first: `name` is what Claude Code sends (its hooks
# reference, and payloads captured from 2.1.x); `worktree_name` is how the reference once
# named it; `branch_name` and `branch` appear in drafts other tools parse. `worktree_path`
# (a path Claude Code would have chosen, in an older reference) gives its last component.
NAME_FIELDS = ("name", "worktree_name", "branch_name", "branch")
PATH_FIELDS = ("worktree_path", "worktreePath", "path")  # WorktreeRemove's path, first wins


# -- reading the document -------------------------------------------------------------------


class _Scanner:
    """Finds where the first JSON object on a byte stream ends, as bytes arrive, without
    parsing it: strings (with their escapes) and nesting are followed, nothing else. The
    bytes it looks at are ASCII, so UTF-8 text inside strings never confuses it."""

    def __init__(self) -> None:
        self.seen = 0
        self.depth = 0
        self.started = False
        self.in_string = False
        self.escaped = False

    def feed(self, chunk: bytes) -> int | None:
        """The offset just past the object's closing brace, once it has arrived."""
        for i, byte in enumerate(chunk):
            if not self.started:
                if byte in b" \t\r\n":
                    continue
                if byte != ord("{"):
                    raise BadInput(
                        "bad-hook-input",
                        "the hook document on standard input is not a JSON object",
                        hint="Claude Code sends one JSON object; run this command only as its "
                        "WorktreeCreate/WorktreeRemove hook (lanes init --claude-code)",
                    )
                self.started, self.depth = True, 1
            elif self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == ord("\\"):
                    self.escaped = True
                elif byte == ord('"'):
                    self.in_string = False
            elif byte == ord('"'):
                self.in_string = True
            elif byte in b"{[":
                self.depth += 1
            elif byte in b"}]":
                self.depth -= 1
                if self.depth == 0:
                    return self.seen + i + 1
        self.seen += len(chunk)
        return None


def read_document(
    fd: int, timeout: float = READ_TIMEOUT, limit: int = READ_LIMIT
) -> dict[str, Any]:
    """The JSON object on file descriptor `fd`, returned as soon as it is complete: the
    writer may keep its end open. Exit 2 (`bad-hook-input`) when it is not a JSON object,
    is larger than `limit` bytes, or is not complete within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    buf = bytearray()
    scanner = _Scanner()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BadInput(
                "bad-hook-input",
                f"no complete JSON document arrived on standard input within {timeout:g}s "
                f"({len(buf)} bytes read)",
                hint="Claude Code writes the hook document at once; to try the hook by "
                "hand, pipe a document in: echo '{...}' | lanes hook worktree-create",
            )
        try:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
        except (OSError, ValueError) as exc:  # closed, or not something one can read
            raise BadInput(
                "bad-hook-input",
                f"standard input cannot be read: {exc}",
                hint="give the hook document on standard input",
            ) from None
        if not chunk:
            break  # end of input: what came is the whole document, or is not one
        end = scanner.feed(chunk)
        buf += chunk
        if end is not None:
            return _parse(bytes(buf[:end]), limit)
        if len(buf) > limit:
            _too_big(limit)
    if not buf.strip():
        raise BadInput(
            "bad-hook-input",
            "standard input was empty: no hook document",
            hint="Claude Code sends the document on standard input; by hand: "
            "echo '{...}' | lanes hook worktree-create",
        )
    return _parse(bytes(buf), limit)


def _too_big(limit: int) -> None:
    raise BadInput(
        "bad-hook-input",
        f"the hook document is larger than {limit} bytes",
        hint="a Claude Code hook document is a small JSON object",
    )


def _parse(data: bytes, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        _too_big(limit)
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(
            "bad-hook-input",
            f"the hook document on standard input is not valid JSON: {exc}",
            hint="Claude Code sends one JSON object, like "
            '{"session_id": "...", "cwd": "/repo", "hook_event_name": "WorktreeCreate", '
            '"name": "feature-auth"}',
        ) from None
    if not isinstance(doc, dict):
        raise BadInput(
            "bad-hook-input",
            "the hook document on standard input is not a JSON object",
            hint="Claude Code sends one JSON object",
        )
    return doc


# -- what the document says -----------------------------------------------------------------


def _string(doc: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None or value == "":
        if required:
            raise BadInput(
                "bad-hook-input",
                f"the hook document has no {key!r}",
                hint=f"Claude Code sends {key!r} in every hook document; run this command "
                "only as its hook, or give it by hand",
            )
        return None
    if not isinstance(value, str):
        raise BadInput(
            "bad-hook-input",
            f"{key!r} in the hook document is {json.dumps(value)[:60]}, not a string",
            hint=f"give {key!r} as a JSON string",
        )
    return value


def _event(doc: dict[str, Any], expected: str) -> None:
    event = _string(doc, "hook_event_name")
    if event is not None and event != expected:
        raise BadInput(
            "bad-hook-input",
            f"this command is the {expected} hook, but the document is for {event}",
            hint=f"in .claude/settings.json, give this command to {expected} only "
            "(lanes init --claude-code writes it so)",
        )


def _directory(value: str, key: str) -> Path:
    path = Path(value)
    if not path.is_absolute() or not path.is_dir():
        raise BadInput(
            "bad-hook-input",
            f"{key} {value!r} in the hook document is not an absolute path to a directory",
            hint="Claude Code sends the session's working directory, the repository",
        )
    return path


@dataclass(frozen=True)
class CreateRequest:
    session_id: str
    cwd: Path
    name: str | None  # the worktree's name as sent, if any


def create_request(doc: dict[str, Any]) -> CreateRequest:
    """What a WorktreeCreate document asks for; exit 2 naming what is missing or wrong."""
    _event(doc, CREATE)
    session = _string(doc, "session_id", required=True)
    cwd = _directory(_string(doc, "cwd", required=True) or "", "cwd")
    name = None
    for key in NAME_FIELDS:
        name = _string(doc, key)
        if name is not None:
            break
    if name is None and (path := _string(doc, "worktree_path")) is not None:
        name = os.path.basename(os.path.normpath(path)) or None
    return CreateRequest(session or "", cwd, name)


@dataclass(frozen=True)
class RemoveRequest:
    worktree: str  # absolute, normalised
    cwd: Path | None
    session_id: str | None


def remove_request(doc: dict[str, Any]) -> RemoveRequest:
    _event(doc, REMOVE)
    path = None
    for key in PATH_FIELDS:
        path = _string(doc, key)
        if path is not None:
            break
    if path is None:
        raise BadInput(
            "bad-hook-input",
            "the hook document has no 'worktree_path'",
            hint="Claude Code sends the path WorktreeCreate printed as 'worktree_path'",
        )
    if not os.path.isabs(path) or any(c in path for c in "\0\n\r"):
        raise BadInput(
            "bad-hook-input",
            f"worktree_path {path[:200]!r} is not an absolute path",
            hint="Claude Code sends the absolute path WorktreeCreate printed",
        )
    raw_cwd = _string(doc, "cwd")
    cwd = Path(raw_cwd) if raw_cwd and os.path.isabs(raw_cwd) else None
    return RemoveRequest(os.path.normpath(path), cwd, _string(doc, "session_id"))


# -- names ------------------------------------------------------------------------------------


def lane_name(name: str | None) -> str | None:
    """A valid lane name made from the worktree's name (lower case; anything outside
    [a-z0-9._-] becomes '-'; at most 40 characters), or None when nothing is left of it."""
    if not name:
        return None
    text = re.sub(r"[^a-z0-9._-]+", "-", name.lower())
    text = re.sub(r"\.{2,}", ".", text).lstrip("._-")[:40]
    text = text.rstrip("._-")
    if text.endswith(".lock"):
        text = text[: -len(".lock")] + "-lock"
    if not text:
        return None
    return check_lane(text)


def generated_lane() -> str:
    return "claude-" + uuid.uuid4().hex[:8]


def agent_id(session_id: str) -> str:
    """`claude-<session_id>`, made a valid agent id (a UUID fits as it is)."""
    cleaned = re.sub(r"[^A-Za-z0-9._@-]+", "-", session_id).strip("-")
    if not cleaned:
        raise BadInput(
            "bad-hook-input",
            f"session_id {session_id[:80]!r} holds nothing an agent id can be made of",
            hint="Claude Code sends its session's UUID as session_id",
        )
    return check_agent((AGENT_PREFIX + cleaned)[:64])


def wave_of(env_wave: str | None, now: datetime | None = None) -> str:
    """LANES_WAVE when set (and valid), else the wave of the day: d<YYYYMMDD>, in UTC."""
    if env_wave:
        return check_wave(env_wave)
    return check_wave("d" + (now or datetime.now(UTC)).strftime("%Y%m%d"))


# -- WorktreeCreate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateResult:
    wave: str
    lane: str
    agent: str
    worktree: str
    branch: str
    base: str
    claim_dir: str
    resumed: bool  # the lane's branch existed (a released lane claimed again)
    reused: bool  # the session already held this lane: its worktree, as it is
    name: str | None  # the worktree's name as Claude Code sent it
    notes: list[str] = field(default_factory=list)
    port: int | None = None  # LANES_PORT, when [setup] reserves ports


def worktree_create(
    req: CreateRequest, env_wave: str | None, now: datetime | None = None
) -> CreateResult:
    """Claim the lane named after the worktree, for the session, in the repository of the
    session's cwd. Exit codes are lanes' own (all non-zero: Claude Code fails the creation):
    2 bad input, 3 the lane is held by another agent, 4 the lane is integrated."""
    from lanes import claims, config, worktrees

    wave = wave_of(env_wave, now)
    agent = agent_id(req.session_id)
    notes: list[str] = []
    lane = lane_name(req.name)
    if lane is None:
        lane = generated_lane()
        notes.append(
            f"the worktree's name {req.name!r} gives no lane name: lane {lane}"
            if req.name
            else f"no worktree name in the hook document: lane {lane}"
        )
    elif lane != req.name:
        notes.append(f"the worktree's name {req.name!r} is lane {lane}")
    cfg = config.load(req.cwd)
    path = cfg.worktree_path(wave, lane)
    if any(c in str(path) for c in "\0\n\r"):  # Claude Code reads one line of stdout
        raise BadInput(
            "bad-config",
            f"the worktree path {str(path)!r} holds a line break",
            hint="set worktree_root and project to names without line breaks",
        )
    record = claims.read_record(cfg.claim_dir(wave, lane))
    if (
        record is not None
        and record.agent == agent
        and worktrees.is_ours(cfg, Path(record.worktree))
    ):
        # Claude Code asked again for a worktree this session holds (a resumed session):
        # the same worktree, as it is; no second claim.
        return CreateResult(
            wave,
            lane,
            agent,
            record.worktree,
            record.branch,
            record.base,
            str(cfg.claim_dir(wave, lane)),
            resumed=True,
            reused=True,
            name=req.name,
            notes=[*notes, f"lane {wave}/{lane} is already this session's: its worktree"],
        )
    result = claims.claim(cfg, wave, lane, agent)
    return CreateResult(
        result.wave,
        result.lane,
        result.agent,
        result.worktree,
        result.branch,
        result.base,
        result.claim_dir,
        resumed=result.resumed,
        reused=False,
        name=req.name,
        notes=notes,
        port=getattr(result, "port", None),
    )


# -- WorktreeRemove -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoveResult:
    worktree: str
    action: str  # released; left (a lane kept as it is); ignored (not a lanes worktree)
    reason: str
    wave: str | None = None
    lane: str | None = None
    agent: str | None = None
    archived_to: str | None = None
    saved_patch: str | None = None
    saved_ignored: str | None = None
    worktree_removed: bool = False


def worktree_remove(req: RemoveRequest) -> RemoveResult:
    """Release the lane whose worktree is `req.worktree`, saving its work (lanes.claims
    .release). A path that is no lane's worktree, a lane another kind of agent holds, and
    a lane already submitted or integrated are left as they are, and said so: this hook
    cannot block Claude Code's removal, and lanes never deletes what it did not create."""
    from lanes import claims, state
    from lanes.errors import Refused

    path = req.worktree
    cfg = _config_for(Path(path), req.cwd)
    if cfg is None:
        return RemoveResult(path, "ignored", "neither the worktree nor cwd is in a git repository")
    found = _lane_at(cfg, path)
    if found is None:
        return RemoveResult(
            path, "ignored", f"no lane of {cfg.main_checkout} has its worktree there"
        )
    wave, lane, record = found

    def left(reason: str) -> RemoveResult:
        return RemoveResult(path, "left", reason, wave, lane, record.agent)

    now = state.lane_state(cfg, wave, lane)
    if now == "integrated":
        return left(f"lane {wave}/{lane} is integrated: lanes gc removes its worktree")
    if not record.agent.startswith(AGENT_PREFIX):
        return left(
            f"lane {wave}/{lane} is held by {record.agent}, not by a Claude Code session: "
            "left as it is (lanes release it by hand)"
        )
    if now == "submitted":
        return left(
            f"lane {wave}/{lane} is submitted: the integrator's now; its worktree stays "
            "until it is integrated (lanes gc removes it then) or bounces"
        )
    try:
        released = claims.release(cfg, wave, lane)
    except Refused as exc:  # released or reaped since it was read
        if exc.code in ("not-held", "lane-integrated"):
            return left(exc.message)
        raise
    return RemoveResult(
        path,
        "released",
        f"lane {wave}/{lane} released, its work saved in its claim directory",
        wave,
        lane,
        released.agent,
        released.archived_to,
        released.saved_patch,
        released.saved_ignored,
        released.worktree_removed,
    )


def _config_for(worktree: Path, cwd: Path | None) -> Config | None:
    """The configuration of the repository the worktree belongs to (found from the
    worktree itself while it exists, else from the session's cwd), or None."""
    from lanes import config
    from lanes.errors import LanesError

    for where in (worktree, cwd):
        if where is None or not where.is_dir():
            continue
        try:
            return config.load(where)
        except LanesError:
            continue
    return None


def _lane_at(cfg: Config, path: str) -> tuple[str, str, ClaimRecord] | None:
    """The held lane whose claim record names `path` as its worktree."""
    from lanes import claims, state

    wanted = {path, os.path.realpath(path)}
    for wave in state.local_waves(cfg):
        for lane, claim_dir in state.lane_dirs(cfg, wave):
            record = claims.read_record(claim_dir)
            if record is None:
                continue
            if record.worktree in wanted or os.path.realpath(record.worktree) in wanted:
                return wave, lane, record
    return None


# -- .claude/settings.json (lanes init --claude-code) ------------------------------------------

SETTINGS = Path(".claude") / "settings.json"
COMMANDS = {CREATE: "lanes hook worktree-create", REMOVE: "lanes hook worktree-remove"}


@dataclass(frozen=True)
class SettingsResult:
    path: str
    added: list[str]  # the events whose lanes hook was added (or would be)
    present: list[str]  # the events that had it already
    warnings: list[str]  # other hooks on those events, which Claude Code would also run
    text: str  # settings.json as written (or, with a dry run, as it would be)
    changed: bool
    dry_run: bool = False


@dataclass(frozen=True)
class SettingsPlan:
    path: Path
    original: bytes | None  # the file as read; None when there was none
    result: SettingsResult


def _ours(command: object, subcommand: str) -> bool:
    """A hook command that runs `lanes hook <subcommand>`, however lanes is reached (a
    path to it, `python -m lanes`, environment assignments before it)."""
    if not isinstance(command, str):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    return words[-2:] == ["hook", subcommand] and any(
        os.path.basename(w) == "lanes" for w in words[:-2]
    )


def _bad_settings(path: Path, why: str) -> BadInput:
    return BadInput(
        "bad-claude-settings",
        f"{path} {why}",
        hint=f"fix {path} (Claude Code reads it as a JSON object), then run lanes init "
        "--claude-code again; nothing was changed",
    )


def plan_hooks(root: Path) -> SettingsPlan:
    """Read `<root>/.claude/settings.json` and compute it with both lanes hooks added,
    keeping every other key and hook, adding ours only where it is not already; exit 2
    (`bad-claude-settings`) for a file lanes cannot merge into. Nothing is written."""
    path = root / SETTINGS
    if path.is_symlink():
        raise _bad_settings(
            path, f"is a symbolic link (to {os.readlink(path)}); lanes writes only regular files"
        )
    if os.path.lexists(path) and not path.is_file():
        raise _bad_settings(path, "is not a regular file")
    original: bytes | None
    try:
        original = path.read_bytes()
    except FileNotFoundError:
        original = None
    except OSError as exc:
        raise _bad_settings(path, f"cannot be read ({exc.strerror})") from None
    data: Any = {}
    indent: str | int = 2
    if original is not None and original.strip():
        try:
            text = original.decode("utf-8")
            data = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _bad_settings(path, f"is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _bad_settings(path, "is not a JSON object")
        if (found := re.search(r"\n([ \t]+)\S", text)) is not None:
            indent = found.group(1)  # the file's own indentation, kept
    hooks = data.setdefault("hooks", {})
    if not isinstance(hooks, dict):
        raise _bad_settings(path, '"hooks" is not a JSON object')
    added, present, warnings = [], [], []
    for event, command in COMMANDS.items():
        groups = hooks.setdefault(event, [])
        if not isinstance(groups, list):
            raise _bad_settings(path, f'"hooks"."{event}" is not a JSON array')
        subcommand = command.split()[-1]
        ours = others = 0
        for group in groups:
            entries = group.get("hooks") if isinstance(group, dict) else None
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and _ours(entry.get("command"), subcommand):
                    ours += 1
                else:
                    others += 1
        if ours:
            present.append(event)
        else:
            groups.append({"hooks": [{"type": "command", "command": command}]})
            added.append(event)
        if others:
            warnings.append(
                f"{event} has {others} other hook(s) in {path}: Claude Code runs them "
                "all, and only one worktree path can be used; remove the others"
            )
    new_text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    result = SettingsResult(str(path), added, present, warnings, new_text, bool(added))
    return SettingsPlan(path, original, result)


def write_hooks(plan: SettingsPlan) -> SettingsResult:
    """Write the planned settings.json: a temporary file beside it, then one rename (a kill
    leaves the old file or the new one). A file changed since it was planned is planned
    again from what it says now."""
    if not plan.result.changed:
        return plan.result
    try:
        now: bytes | None = plan.path.read_bytes()
    except FileNotFoundError:
        now = None
    if now != plan.original:
        plan = plan_hooks(plan.path.parent.parent)
        if not plan.result.changed:
            return plan.result
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.path.with_name(f".settings.json.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(plan.result.text)
            fh.flush()
            os.fsync(fh.fileno())
        if plan.original is not None:
            os.chmod(tmp, plan.path.stat().st_mode & 0o7777)
        os.replace(tmp, plan.path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return plan.result
