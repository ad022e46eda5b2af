"""Protected paths: files no lane may change and no fragment can ask for.

Besides the contended surfaces (their own modules), a lane may not change:
- what `protected` globs in the configuration match;
- `lanes.toml` (the rules a lane is judged by: its test_command, its surfaces), and the
  `[tool.lanes]` table of `pyproject.toml` (the same rules, when they live there: judged by
  content in lanes/guard.py, since the rest of that file is the project's);
- the inbox folder and everything under it: claims, fragments, the ledger, lanes' own state.
  A landing would write them into the live inbox of the main checkout (a fragment planted
  in another lane's claim, a ledger replaced, a claim faked); a file where a folder of the
  inbox's path is would be in its way;
- any `.gitattributes`, at any depth: attributes decide how git merges, diffs and checks
  out files, so one lane's `merge=union` would decide how the pass merges the lanes after
  it (docs/decisions.md, D35).
- what decides what other lanes get and run: `.worktreeinclude` (the git-ignored files,
  secrets among them, that every new worktree is given a copy of) and
  `.claude/settings.json` (the hooks Claude Code runs, `lanes init --claude-code`'s among
  them).

A path is judged as git writes it and as a case-insensitive, normalising filesystem sees it
(macOS, Windows): there `Server.json`, `server.json ` and `server.json.` are `server.json`,
a decomposed `é` is the composed one, and some invisible code points are dropped; a lane's
look-alike would be checked out over the real file. A path that would stand where a folder
holding a protected file is (`.github` as a file or a symlink) is refused with that file.
Pure: paths in, a verdict out.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

KIND = "protected"
CONFIG_KIND = "config"
CONFIG_FILE = "lanes.toml"
PYPROJECT = "pyproject.toml"  # [tool.lanes] is read from it when there is no lanes.toml
INBOX_KIND = "inbox"
ATTRIBUTES_KIND = "attributes"
ATTRIBUTES_FILE = ".gitattributes"
SETUP_KIND = "setup"
SETUP_FILES = (".worktreeinclude", ".claude/settings.json")
SETUP_INSTEAD = (
    "nothing: it decides what every new lane worktree is given (.worktreeinclude: which "
    "git-ignored files are copied in) or runs (.claude/settings.json: Claude Code's hooks); "
    "ask the operator to change it on main"
)
INSTEAD = "nothing: ask the operator to change it"
TOOL_LANES_INSTEAD = (
    "nothing: [tool.lanes] holds the rules every lane is judged by; ask the operator to "
    "change it (the rest of pyproject.toml is yours)"
)
INBOX_INSTEAD = (
    "nothing: the inbox holds lanes' own state (claims, fragments, the ledger), written by "
    "the lanes commands, never by a commit; drop fragments with lanes fragment"
)
ATTRIBUTES_INSTEAD = (
    "nothing: .gitattributes decide how the pass merges every lane (a merge driver there "
    "would silence other lanes' conflicts); ask the operator to change them on main"
)

# Code points HFS+ ignores in names (git's own list, utf8.c is_hfs_dotgit).
_IGNORED = dict.fromkeys(
    [*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)


@dataclass(frozen=True)
class Rule:
    kind: str
    instead: str


def fold(path: str) -> str:
    """The name `path` has on a case-insensitive, normalising filesystem: each part in NFC,
    case-folded, without ignorable code points or trailing spaces and dots."""
    return "/".join(_fold_part(part) for part in path.split("/"))


def _fold_part(part: str) -> str:
    return unicodedata.normalize("NFC", part.translate(_IGNORED)).casefold().rstrip(" .")


def is_protected(path: str, glob: str) -> bool:
    """`glob` (fnmatch: `*` crosses `/`) matches the path or a folder holding it, the way
    people write globs for git: `infra` and `infra/` hold `infra/main.tf`, and a leading
    `**/` also matches at the top (`**/Dockerfile` holds `Dockerfile`). A look-alike of a
    match (`INFRA/main.tf`) matches too."""
    pattern = glob.strip("/")
    patterns = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
    loose = {unicodedata.normalize("NFC", p).casefold() for p in patterns}
    for candidate, globs in ((path, patterns), (fold(path), loose)):
        parts = candidate.split("/")
        held_by = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatchcase(p, g) for p in held_by for g in globs):
            return True
    return not _has_magic(pattern) and _in_the_way(path, pattern)


def _has_magic(glob: str) -> bool:
    return any(c in glob for c in "*?[")


def _in_the_way(path: str, target: str) -> bool:
    """`path` stands where a folder holding `target` is (a file or link there replaces it)."""
    return fold(target).startswith(fold(path) + "/")


def same_file(path: str, target: str) -> bool:
    return fold(path) == fold(target)


def under(path: str, folder: str) -> bool:
    """`path` is `folder` or inside it, or stands where a folder holding it is."""
    p, f = fold(path), fold(folder.strip("/"))
    return p == f or p.startswith(f + "/") or f.startswith(p + "/")


def match(
    path: str,
    files: Mapping[str, Rule],
    inbox: str,
    globs: Sequence[str],
    lookalikes: Mapping[str, Rule] | None = None,
) -> Rule | None:
    """The rule that refuses a changed `path`, or None. `files`: exact protected files (the
    contended surfaces, lanes.toml), refused with their look-alikes and with a path standing
    where a folder holding them is; `lookalikes`: files whose own changes are judged
    elsewhere (pyproject.toml) but whose look-alikes are refused."""
    for target, rule in files.items():
        if same_file(path, target) or _in_the_way(path, target):
            return rule
    for target, rule in (lookalikes or {}).items():
        if path != target and (same_file(path, target) or _in_the_way(path, target)):
            return rule
    if inbox.strip("/") and under(path, inbox):
        return Rule(INBOX_KIND, INBOX_INSTEAD)
    if fold(path).rsplit("/", 1)[-1] == ATTRIBUTES_FILE:
        return Rule(ATTRIBUTES_KIND, ATTRIBUTES_INSTEAD)
    if any(is_protected(path, glob) for glob in globs):
        return Rule(KIND, INSTEAD)
    return None
