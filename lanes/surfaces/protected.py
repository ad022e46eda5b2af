"""Protected paths: files no lane may change and no fragment can ask for.

`protected` globs from the configuration, and `lanes.toml` itself (the rules a lane is
judged by: its test_command, its surfaces). Pure: paths in, a verdict out.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

KIND = "protected"
CONFIG_KIND = "config"
CONFIG_FILE = "lanes.toml"
INSTEAD = "nothing: ask the operator to change it"


def is_protected(path: str, glob: str) -> bool:
    """`glob` (fnmatch: `*` crosses `/`) matches the path or a folder holding it, the way
    people write globs for git: `infra` and `infra/` hold `infra/main.tf`, and a leading
    `**/` also matches at the top (`**/Dockerfile` holds `Dockerfile`)."""
    pattern = glob.strip("/")
    patterns = {pattern, pattern[3:]} if pattern.startswith("**/") else {pattern}
    parts = path.split("/")
    held_by = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatchcase(p, g) for p in held_by for g in patterns)
