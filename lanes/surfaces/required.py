"""The required-migrations list, read without running anything.

`[manifest] required` is either `FILE:NAME`, a Python file and the module-level name of a
list, tuple or set literal of strings (read with `ast`; the file is parsed, never
imported or executed), or a plain `FILE` holding one entry per line (`#` comments and
blank lines ignored).

A value that cannot be a spec at all (an absolute path, `..`, an empty file or name) is a
configuration error: exit 2. A spec that is well formed but does not lead to a list (the
file is missing, the name is not assigned, the value is not a literal) is a property of
the repository: the gate's check fails and says why.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import PurePosixPath

from lanes.errors import BadInput, Refused

# Calls we read as the literal they wrap: `frozenset({...})` is as inert as `{...}`.
_WRAPPERS = {"frozenset", "set", "tuple", "list", "sorted"}


@dataclass(frozen=True)
class RequiredSpec:
    file: str
    name: str | None  # None: a text file, one entry per line

    def __str__(self) -> str:
        return f"{self.file}:{self.name}" if self.name else self.file


def parse_spec(value: str) -> RequiredSpec:
    """'scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS' or 'scripts/required.txt'."""
    text = value.strip()
    file, sep, name = text.rpartition(":")
    if not sep:
        file, name = text, ""
    elif not name.isidentifier():
        raise _bad(value, f"{name!r} after ':' is not a Python name")
    if not file:
        raise _bad(value, "the file part is empty")
    if not name and file.endswith(".py"):
        raise _bad(value, "a Python file needs the list's name after ':'")
    path = PurePosixPath(file)
    if path.is_absolute() or ".." in path.parts or "\\" in file:
        raise _bad(value, "the file must be a relative path inside the repository")
    return RequiredSpec(path.as_posix(), name or None)


def _bad(value: str, why: str) -> BadInput:
    return BadInput(
        "bad-config",
        f"[manifest] required = {value!r}: {why}",
        hint='use "FILE:NAME" (a list literal in a Python file) or "FILE" (one entry per line), '
        'e.g. "scripts/schema_guard.py:AM_REQUIRED_MIGRATIONS"',
    )


def read(spec: RequiredSpec, text: str) -> list[str]:
    """The required entries, in the order written; Refused says why there are none."""
    if spec.name is None:
        return text_entries(text)
    return _literal_list(spec, text)


def text_entries(text: str) -> list[str]:
    """One entry per line; blank lines and lines starting with '#' are not entries."""
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def _literal_list(spec: RequiredSpec, text: str) -> list[str]:
    try:
        tree = ast.parse(text, filename=spec.file)
    except (SyntaxError, ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line})" if line else ""
        raise _unreadable(spec, f"{spec.file} is not valid Python{where}") from None
    value: ast.expr | None = None
    line = 0
    for stmt in tree.body:  # module level only: what runs first when the module loads
        if isinstance(stmt, ast.Assign) and any(_binds(t, spec.name) for t in stmt.targets):
            value, line = stmt.value, stmt.lineno
        elif isinstance(stmt, ast.AnnAssign) and _binds(stmt.target, spec.name):
            if stmt.value is None:
                continue  # a bare annotation binds nothing
            value, line = stmt.value, stmt.lineno
        elif isinstance(stmt, ast.AugAssign) and _binds(stmt.target, spec.name):
            raise _unreadable(
                spec,
                f"{spec.name} is changed by `{ast.unparse(stmt)[:60]}` at line {stmt.lineno}; "
                "lanes reads the list without running the file, so write it as one literal",
            )
    if value is None:
        raise _unreadable(
            spec, f"{spec.file} assigns no {spec.name} at module level (e.g. {spec.name} = [...])"
        )
    return _strings(spec, value, line)


def _binds(target: ast.expr, name: str | None) -> bool:
    return isinstance(target, ast.Name) and target.id == name


def _strings(spec: RequiredSpec, node: ast.expr, line: int) -> list[str]:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _WRAPPERS
        and len(node.args) == 1
        and not node.keywords
    ):
        node = node.args[0]
    if not isinstance(node, ast.List | ast.Tuple | ast.Set):
        raise _unreadable(
            spec,
            f"{spec.name} at line {line} of {spec.file} is `{ast.unparse(node)[:60]}`, not a "
            "list, tuple or set literal; lanes reads it without running the file",
        )
    found: list[str] = []
    for element in node.elts:
        if not (isinstance(element, ast.Constant) and isinstance(element.value, str)):
            raise _unreadable(
                spec,
                f"{spec.name} at line {line} of {spec.file} holds "
                f"`{ast.unparse(element)[:40]}`, which is not a string literal",
            )
        found.append(element.value)
    return found


def _unreadable(spec: RequiredSpec, detail: str) -> Refused:
    return Refused(
        "required-unreadable",
        detail,
        hint=f"fix {spec.file} or [manifest] required in the configuration",
    )
