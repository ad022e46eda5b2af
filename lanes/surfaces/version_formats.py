"""Where each kind of version file keeps its version: one locator per kind of file.

Each returns the field's span in the file's text (its BOM set aside), the value, and how
to write another value there; `lanes/surfaces/version.py` reads and writes through them
and checks every write. See that module's docstring for the formats.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from lanes.errors import BadInput


@dataclass(frozen=True)
class Field:
    """Where the version is written in a file's text (after its BOM), and how to write another."""

    start: int
    end: int
    value: str
    render: Callable[[str], str]


def locate(name: str, body: str) -> Field:
    """The version field of `body` (a file's text without its BOM), by the file's name."""
    base = PurePosixPath(name).name
    if base == "Cargo.toml":
        return _cargo_field(name, body)
    if base.endswith(".toml"):
        return _pyproject_field(name, body)
    if base == "setup.cfg":
        return _setup_cfg_field(name, body)
    if base.endswith((".gradle", ".gradle.kts")):
        return _gradle_field(name, body)
    if base.endswith(".py"):
        return _python_field(name, body)
    if base.endswith(".json"):
        return _json_field(name, body)
    raise unreadable(
        name,
        "lanes does not know where this kind of file keeps its version (it reads "
        "pyproject.toml, Cargo.toml, setup.cfg, build.gradle(.kts), __version__ in a .py "
        "file and .json files)",
    )


_PLAIN_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+!_-]*")


def _quoted(name: str, quote: str) -> Callable[[str], str]:
    """A writer of `new` between `quote`s, for files where a version is written unescaped."""

    def render(new: str) -> str:
        if not _PLAIN_VERSION.fullmatch(new):
            raise BadInput(
                "bad-version",
                f"version {new!r} cannot be written into {name}: only letters, digits and "
                ". + ! _ - are",
                hint="set a plain semantic version (like 0.3.5) in every version file",
            )
        return f"{quote}{new}{quote}"

    return render


# -- TOML: pyproject.toml and Cargo.toml, through tomlkit -------------------------------


def _pyproject_field(name: str, body: str) -> Field:
    doc = _toml(name, body)
    project = _table(doc, "project")
    poetry = _table(_table(doc, "tool"), "poetry")
    dynamic = project.get("dynamic") if project is not None else None
    is_dynamic = isinstance(dynamic, list) and "version" in dynamic
    if project is not None and "version" in project:
        if is_dynamic:
            raise unreadable(name, "[project] both sets the version and declares it dynamic")
        return _toml_string(name, body, doc, project, "[project].version")
    if poetry is not None and "version" in poetry:
        return _toml_string(name, body, doc, poetry, "[tool.poetry].version")
    if is_dynamic:
        raise unreadable(
            name,
            "[project] declares the version dynamic: lanes reads it where it is written, "
            "e.g. __version__ in the package",
        )
    raise unreadable(name, "it has neither [project].version nor [tool.poetry].version")


def _cargo_field(name: str, body: str) -> Field:
    doc = _toml(name, body)
    package = _table(doc, "package")
    shared = _table(_table(doc, "workspace"), "package")
    own = package.get("version") if package is not None else None
    inherits = isinstance(own, dict) and own.get("workspace") is True
    has_shared = shared is not None and "version" in shared
    if package is not None and own is not None and not inherits:
        if has_shared:
            raise unreadable(
                name,
                "it sets both [package].version and [workspace.package].version: lanes sets "
                "one version per file (make the package inherit it: version.workspace = true)",
            )
        return _toml_string(name, body, doc, package, "[package].version")
    if shared is not None and has_shared:
        return _toml_string(name, body, doc, shared, "[workspace.package].version")
    if inherits:
        raise unreadable(
            name,
            "[package] inherits its version from the workspace (version.workspace = true): "
            "lanes reads it where it is written, in [workspace.package] of the workspace's "
            "Cargo.toml",
        )
    raise unreadable(name, "it has neither [package].version nor [workspace.package].version")


def _toml(name: str, body: str) -> Any:
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    try:
        return tomlkit.parse(body)
    except TOMLKitError as exc:
        raise unreadable(name, f"it is not valid TOML ({exc})") from None


def _table(doc: Any, key: str) -> Any:
    table = doc.get(key) if isinstance(doc, dict) else None
    return table if isinstance(table, dict) else None


def _toml_string(name: str, body: str, doc: Any, table: Any, where: str) -> Field:
    """Where `table["version"]` is written: tomlkit writes a marker there, and only there."""
    import tomlkit
    from tomlkit.items import String, StringType

    item = table["version"]
    if not isinstance(item, String) or item.type not in (StringType.SLB, StringType.SLL):
        raise unreadable(name, f"{where} is not a one-line string")
    raw = item.as_string()
    marker = "lanes-version-field"
    while marker in body:
        marker += "-"
    table["version"] = tomlkit.string(marker)  # the document is ours: parsed for this call
    out = tomlkit.dumps(doc)
    start = out.find(f'"{marker}"')
    end = start + len(raw)
    if not (
        start >= 0
        and out.count(marker) == 1
        and out[:start] == body[:start]
        and body[start:end] == raw
        and out[start + len(marker) + 2 :] == body[end:]
    ):
        raise unreadable(name, f"lanes cannot tell where {where} is written")
    quote = "'" if item.type is StringType.SLL else '"'
    return Field(start, end, str(item), _quoted(name, quote))


# -- setup.cfg: `version = X` under [metadata] ----------------------------------------

_CFG_SECTION = re.compile(r"\[(?P<header>.+)\]")  # configparser's own SECTCRE
_CFG_VERSION = re.compile(r"version[ \t]*[=:][ \t]*")


def _setup_cfg_field(name: str, body: str) -> Field:
    spans: list[tuple[int, int]] = []
    section = None
    offset = 0
    for line in body.split("\n"):  # configparser splits lines on "\n" only
        header = _CFG_SECTION.match(line.strip()) if line.startswith("[") else None
        if header:
            section = header["header"]
        elif section == "metadata" and (key := _CFG_VERSION.match(line)):
            value = line[key.end() :].rstrip()
            spans.append((offset + key.end(), offset + key.end() + len(value)))
        offset += len(line) + 1
    if not spans:
        raise unreadable(name, "it has no version = X line under [metadata]")
    if len(spans) > 1:
        raise unreadable(name, f"[metadata] sets version {len(spans)} times")
    start, end = spans[0]
    value = body[start:end]
    if value.startswith(("attr:", "file:")):
        raise unreadable(
            name,
            f"[metadata] takes the version from {value}: lanes reads it where it is written, "
            "e.g. __version__ in the package",
        )
    if not value:
        raise unreadable(name, "its [metadata] version is empty")
    if any(c.isspace() for c in value):
        raise unreadable(
            name,
            f"its [metadata] version {value!r} is not one word (setuptools reads the whole "
            "line as the version, a comment included)",
        )
    parsed = _setup_cfg_version(name, body)
    if parsed != value:
        raise unreadable(
            name,
            f"setuptools reads its [metadata] version as {parsed!r}, not {value!r} "
            "(a value that continues on an indented line?)",
        )
    return Field(start, end, value, _quoted(name, ""))


def _setup_cfg_version(name: str, body: str) -> str | None:
    """The [metadata] version as setuptools' configparser reads it."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # as setuptools does
    try:
        parser.read_string(body)
    except configparser.Error as exc:
        raise unreadable(name, f"it is not a valid INI file ({str(exc).splitlines()[0]})") from None
    return parser.get("metadata", "version", fallback=None)


# -- build.gradle(.kts): a top-level `version = "X"` line ------------------------------

_GRADLE_KEY = re.compile(r"version(?![\w$])")
_GRADLE_VERSION = re.compile(
    r"version(?:[ \t]*=(?!=)[ \t]*|[ \t]+)(?P<q>[\"'])(?P<value>[^\"'\\\r\n]*)(?P=q)"
    r"(?=[ \t]*;?[ \t]*(?://[^\r\n]*)?(?:\r?\n|\r|\Z))"
)


def _gradle_field(name: str, body: str) -> Field:
    starts = [s for s in _gradle_top_level_lines(name, body) if _GRADLE_KEY.match(body, s)]
    if not starts:
        raise unreadable(
            name,
            'it has no top-level version line: lanes reads version = "1.2.3" (or Groovy\'s '
            'version "1.2.3") at the start of a line, outside any block',
        )
    if len(starts) > 1:
        lines = ", ".join(str(body.count("\n", 0, s) + 1) for s in starts)
        raise unreadable(
            name,
            f"it sets version {len(starts)} times at the top level (lines {lines}): lanes "
            "changes it only where it is set exactly once",
        )
    match = _GRADLE_VERSION.match(body, starts[0])
    if not match or (match["q"] == '"' and "$" in match["value"]):
        raise unreadable(
            name,
            "its version is taken from a property or computed, not written as a string: "
            'lanes reads it where it is written, e.g. version = "1.2.3"',
        )
    return Field(match.start("q"), match.end(), match["value"], _quoted(name, match["q"]))


def _gradle_top_level_lines(name: str, body: str) -> list[int]:
    """Offsets of the lines that start outside any block, string or comment."""
    starts, depth, i, n = [0], 0, 0, len(body)
    while i < n:
        c = body[i]
        if c == "\n":
            if depth == 0:
                starts.append(i + 1)
        elif body.startswith("//", i):
            i = body.find("\n", i)
            i = n if i < 0 else i
            continue
        elif body.startswith("/*", i):
            i = _past(name, body, "*/", i + 2)
            continue
        elif body.startswith(('"""', "'''"), i):
            i = _past(name, body, body[i : i + 3], i + 3)
            continue
        elif c in "\"'":
            close = re.compile(rf"(?:[^{c}\\\n]|\\.)*{c}")  # a one-line string, escapes skipped
            end = close.match(body, i + 1)
            if not end:
                raise unreadable(
                    name, f"a string at line {body.count(chr(10), 0, i) + 1} is not closed"
                )
            i = end.end()
            continue
        elif c in "{([":
            depth += 1
        elif c in "})]":
            depth -= 1
            if depth < 0:
                raise unreadable(
                    name, f"a {c} at line {body.count(chr(10), 0, i) + 1} closes nothing"
                )
        i += 1
    return starts


def _past(name: str, body: str, close: str, i: int) -> int:
    end = body.find(close, i)
    if end < 0:
        raise unreadable(name, f"a comment or string is not closed ({close} is missing)")
    return end + len(close)


# -- *.py: a top-level `__version__ = "X"` ---------------------------------------------


def _python_field(name: str, body: str) -> Field:
    import ast
    import warnings

    try:
        with warnings.catch_warnings():  # an odd escape elsewhere in the file is not ours
            warnings.simplefilter("ignore")
            tree = ast.parse(body)
    except (SyntaxError, ValueError) as exc:
        raise unreadable(name, f"it is not valid Python ({exc})") from None
    bindings = _module_bindings(tree)
    if not bindings:
        raise unreadable(name, "it does not assign __version__")
    if len(bindings) > 1:
        lines = ", ".join(str(getattr(b, "lineno", "?")) for b in bindings)
        raise unreadable(
            name,
            f"__version__ is assigned {len(bindings)} times (lines {lines}): lanes sets it "
            "only where it is assigned exactly once, at the top level",
        )
    (binding,) = bindings
    statement = next((s for s in tree.body if binding in ast.walk(s)), None)
    if isinstance(statement, ast.ImportFrom):
        module = "." * statement.level + (statement.module or "")
        raise unreadable(
            name,
            f"__version__ is imported from {module}: lanes reads it where it is written, "
            "in that module",
        )
    simple = (isinstance(statement, ast.Assign) and statement.targets == [binding]) or (
        isinstance(statement, ast.AnnAssign) and statement.target is binding
    )
    value = getattr(statement, "value", None) if simple else None
    if value is None:
        raise unreadable(
            name,
            f"__version__ is not assigned on its own at the top level (line "
            f"{getattr(binding, 'lineno', '?')})",
        )
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        raise unreadable(
            name,
            "__version__ is computed, not written as a string: lanes reads it where it is "
            'written, e.g. __version__ = "1.2.3"',
        )
    start = _offset(body, value.lineno, value.col_offset)
    end = _offset(body, value.end_lineno or value.lineno, value.end_col_offset or 0)
    literal = re.fullmatch(r"([\"'])([^\"'\\\r\n]*)\1", body[start:end])
    if not literal or literal[2] != value.value:
        raise unreadable(
            name, "__version__ is not a plain one-line string (no prefix, escape or triple quote)"
        )
    return Field(start, end, value.value, _quoted(name, literal[1]))


def _module_bindings(tree: Any) -> list[Any]:
    """The nodes that bind the module's `__version__`: functions and classes have their own
    names, unless they declare it global."""
    import ast

    found: list[Any] = []
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            found += [node] if node.id == "__version__" else []
        elif isinstance(node, ast.alias):
            found += [node] if (node.asname or node.name.split(".")[0]) == "__version__" else []
        elif isinstance(node, ast.Global | ast.Nonlocal):
            found += [node] if "__version__" in node.names else []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            found += [
                n for n in ast.walk(node) if isinstance(n, ast.Global) and "__version__" in n.names
            ]
            continue
        todo.extend(ast.iter_child_nodes(node))
    return sorted(found, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def _offset(body: str, lineno: int, col: int) -> int:
    """The offset in `body` of ast's (line, UTF-8 byte column): Python ends lines at \\r\\n,
    \\n or \\r."""
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", body)]
    line_start = starts[lineno - 1]
    line = body[line_start:]
    return line_start + len(line.encode("utf-8")[:col].decode("utf-8"))


# -- JSON ------------------------------------------------------------------------------


def _json_field(name: str, body: str) -> Field:
    start, end = _json_span(name, body)
    value = json.loads(body[start:end])
    if not isinstance(value, str):
        raise unreadable(name, 'its top-level "version" is not a string')
    return Field(start, end, value, json.dumps)


def _json_span(name: str, text: str) -> tuple[int, int]:
    """Where the top-level "version" value sits in `text` (start, end)."""
    from json.decoder import scanstring  # type: ignore[attr-defined]

    decoder = json.JSONDecoder()
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        raise unreadable(name, "it is not a JSON object")
    i = _skip(text, i + 1)
    span: tuple[int, int] | None = None
    try:
        while text[i] != "}":
            if text[i] != '"':
                raise ValueError(f"expected a member name at offset {i}")
            key, i = scanstring(text, i + 1)
            i = _skip(text, i)
            if text[i] != ":":
                raise ValueError(f"expected ':' at offset {i}")
            start = _skip(text, i + 1)
            _, end = decoder.raw_decode(text, start)
            if key == "version":
                if span is not None:
                    raise ValueError('"version" appears twice at the top level')
                span = (start, end)
            i = _skip(text, end)
            if text[i] == ",":
                i = _skip(text, i + 1)
                if text[i] != '"':
                    raise ValueError(f"expected a member name after ',' at offset {i}")
            elif text[i] != "}":
                raise ValueError(f"expected ',' or '}}' at offset {i}")
        if text[_skip(text, i + 1) :].strip():
            raise ValueError("there is text after the object")
    except (ValueError, IndexError) as exc:
        raise unreadable(name, f"it is not valid JSON ({exc})") from None
    if span is None:
        raise unreadable(name, 'it has no top-level "version" member')
    return span


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def unreadable(name: str, why: str) -> BadInput:
    return BadInput(
        "bad-version-file",
        f"cannot read the version of {name}: {why}",
        hint="fix the file on main, or list only real version files in [version].files",
        file=name,
    )
