"""GitHub Actions expressions, evaluated with some facts known and the rest unknown.

The gate asks one question of an `if:` condition: can it be true when the run was
dispatched by hand? We parse the expression language (operators, literals, property
access, function calls) and evaluate it in three-valued logic: a context holds what a
dispatch makes certain (`github.event_name` is 'workflow_dispatch', the event payload has
no `workflow_run`, `head_commit` or `pull_request`) and leaves everything else unknown
(`needs.*`, `steps.*`, `github.ref`, inputs, job status). A condition is "false under a
dispatch" only when it comes out falsy whatever the unknowns are. Comparison and
coercion follow GitHub's documented rules (loose equality through numbers, strings
compared ignoring case). See docs/gate.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any


class ExpressionError(ValueError):
    """The text is not a GitHub expression we can parse."""


@dataclass(frozen=True)
class Unknown:
    """A value we cannot know; `truth` is its truthiness when that much is certain."""

    truth: bool | None = None


UNKNOWN = Unknown()


@dataclass(frozen=True)
class Partial:
    """An object some of whose properties are known; `other` is every other property."""

    fields: dict[str, Any] = field(default_factory=dict)
    other: Any = UNKNOWN


# -- tokens ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<num>[+-]?(?:0x[0-9a-fA-F]+|0o[0-7]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w-]))
  | (?P<op>==|!=|<=|>=|&&|\|\||[()\[\].,!<>*])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected {text[pos : pos + 10]!r} at column {pos + 1}")
        kind = match.lastgroup or ""
        if kind != "ws":
            out.append((kind, match.group()))
        pos = match.end()
    return out


# -- parsing: precedence from GitHub's docs, loosest first: || && ==/!= </<=/>/>= ! . [] --

Node = tuple[Any, ...]
_KEYWORDS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "nan": math.nan,
    "infinity": math.inf,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise ExpressionError("the expression ends too early")
        tok = self.toks[self.i]
        if expected is not None and tok[1] != expected:
            raise ExpressionError(f"expected {expected!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.or_()
        if self.i != len(self.toks):
            raise ExpressionError(f"unexpected {self.toks[self.i][1]!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek() == "||":
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.equality()
        while self.peek() == "&&":
            self.take()
            node = ("and", node, self.equality())
        return node

    def equality(self) -> Node:
        node = self.compare()
        while self.peek() in ("==", "!="):
            op = self.take()[1]
            node = ("cmp", op, node, self.compare())
        return node

    def compare(self) -> Node:
        node = self.unary()
        while self.peek() in ("<", "<=", ">", ">="):
            op = self.take()[1]
            node = ("cmp", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            return ("not", self.unary())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, text = self.take()
                if text == "*":
                    node = ("star", node)
                elif kind == "ident":
                    node = ("prop", node, text.lower())
                else:
                    raise ExpressionError(f"expected a property name after '.', found {text!r}")
            elif self.peek() == "*":
                self.take()
                self.take("]")
                node = ("star", node)
            else:
                node = ("index", node, self.or_())
                self.take("]")
        return node

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "str":
            return ("lit", text[1:-1].replace("''", "'"))
        if kind == "num":
            return ("lit", _number(text))
        if text == "(":
            node = self.or_()
            self.take(")")
            return node
        if kind == "ident":
            if self.peek() == "(":
                self.take()
                args: list[Node] = []
                while self.peek() != ")":
                    args.append(self.or_())
                    if self.peek() == ",":
                        self.take()
                    elif self.peek() != ")":
                        raise ExpressionError(f"expected ',' or ')' in {text}(...)")
                self.take(")")
                return ("call", text.lower(), args)
            if text.lower() in _KEYWORDS:
                return ("lit", _KEYWORDS[text.lower()])
            return ("ctx", text.lower())
        raise ExpressionError(f"unexpected {text!r}")


def parse(text: str) -> Node:
    return _Parser(text).parse()


# -- coercion (GitHub's loose rules) -----------------------------------------------------


def _number(text: str) -> float:
    text = text.strip()
    if text == "":
        return 0.0
    if "_" in text:  # Python's float() reads 1_000; JSON does not
        return math.nan
    try:
        low = text.lower().lstrip("+")
        sign = -1.0 if low.startswith("-") else 1.0
        body = low.lstrip("-")
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        return float(text)  # also 'Infinity', 'NaN'
    except ValueError:
        return math.nan


def to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _number(value)
    return math.nan  # arrays and objects


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, int | str):
        return str(value)
    return "Object" if isinstance(value, dict | Partial) else "Array"


def truth(value: Any) -> bool | None:
    """Truthiness: False, 0, -0, '', null and NaN are falsy; None means not known."""
    if isinstance(value, Unknown):
        return value.truth
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True  # arrays, objects, partially known objects


def _known(value: Any) -> bool:
    return not isinstance(value, Unknown | Partial)


def _compare(op: str, left: Any, right: Any) -> bool:
    same = type(left) is type(right) or (
        isinstance(left, int | float)
        and isinstance(right, int | float)
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    )
    if same and isinstance(left, str):
        a: Any = left.casefold()
        b: Any = right.casefold()
    elif same and left is None:
        a = b = 0.0
    elif same and isinstance(left, list | dict):
        a, b = (0.0, 0.0) if left is right else (math.nan, math.nan)
    else:
        a, b = to_number(left), to_number(right)
        if math.isnan(a) or math.isnan(b):
            return op == "!="
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


# -- evaluation ----------------------------------------------------------------------------

_STATUS = {"success", "failure", "cancelled"}


def _get(obj: Any, key: Any) -> Any:
    if isinstance(obj, Unknown):
        return UNKNOWN
    if isinstance(obj, Partial):
        if not isinstance(key, str):
            return UNKNOWN if isinstance(key, Unknown) else obj.other
        return obj.fields.get(key.lower(), obj.other)
    if isinstance(key, Unknown):
        return UNKNOWN if isinstance(obj, list | dict) else None
    if isinstance(obj, dict):
        lowered = {str(k).lower(): v for k, v in obj.items()}
        return lowered.get(to_string(key).lower())
    if isinstance(obj, list) and isinstance(key, int | float) and not isinstance(key, bool):
        index = int(key)
        return obj[index] if float(index) == key and 0 <= index < len(obj) else None
    return None


def evaluate(node: Node, context: dict[str, Any]) -> Any:
    """The value of a parsed expression: a plain value, a Partial, or an Unknown."""
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ctx":
        return context.get(node[1], UNKNOWN)
    if kind == "prop":
        return _get(evaluate(node[1], context), node[2])
    if kind == "index":
        return _get(evaluate(node[1], context), evaluate(node[2], context))
    if kind == "star":
        # Our contexts hold no known arrays or objects, so a filter is over null or unknown.
        base = evaluate(node[1], context)
        return None if base is None else UNKNOWN
    if kind == "not":
        t = truth(evaluate(node[1], context))
        return Unknown() if t is None else not t
    if kind in ("and", "or"):
        left = evaluate(node[1], context)
        lt = truth(left)
        decided = lt is False if kind == "and" else lt is True
        if decided:
            return left
        right = evaluate(node[2], context)
        if lt is not None:
            return right
        rt = truth(right)
        if kind == "and":
            return Unknown(False) if rt is False else Unknown()
        return Unknown(True) if rt is True else Unknown()
    if kind == "cmp":
        left, right = evaluate(node[2], context), evaluate(node[3], context)
        if not (_known(left) and _known(right)):
            return UNKNOWN
        return _compare(node[1], left, right)
    if kind == "call":
        return _call(node[1], [evaluate(arg, context) for arg in node[2]])
    raise ExpressionError(f"cannot evaluate {kind}")


def _call(name: str, args: list[Any]) -> Any:
    if name == "always":
        return True
    if name in _STATUS or not all(_known(a) for a in args):
        return UNKNOWN
    if name == "contains" and len(args) == 2:
        haystack, needle = args
        if isinstance(haystack, list):
            return any(_compare("==", item, needle) for item in haystack)
        return to_string(needle).casefold() in to_string(haystack).casefold()
    if name in ("startswith", "endswith") and len(args) == 2:
        text, part = to_string(args[0]).casefold(), to_string(args[1]).casefold()
        return text.startswith(part) if name == "startswith" else text.endswith(part)
    return UNKNOWN  # format, join, toJSON, fromJSON, hashFiles: not worth guessing


# -- `if:` values --------------------------------------------------------------------------


def condition_value(raw: Any, context: dict[str, Any]) -> Any:
    """Evaluate an `if:` value as GitHub does: `${{ }}` optional; a YAML bool or number as is.

    Text mixing `${{ }}` with anything else is a string template, which is a non-empty
    string and so always true.
    """
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    opens = text.count("${{")
    if opens == 1 and text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    elif opens:
        return Unknown(True)
    return evaluate(parse(text), context)


# -- contexts ------------------------------------------------------------------------------

# What a workflow_dispatch event payload carries; any other github.event.* is absent (null).
_DISPATCH_PAYLOAD = ("inputs", "ref", "repository", "organization", "sender", "workflow")
_PAYLOAD_EXTRA = ("enterprise", "installation")


def dispatch_context() -> dict[str, Any]:
    """The facts of a run started by `gh workflow run`: the rest stays unknown."""
    payload = Partial({k: UNKNOWN for k in (*_DISPATCH_PAYLOAD, *_PAYLOAD_EXTRA)}, other=None)
    github = Partial(
        {"event_name": "workflow_dispatch", "event": payload, "head_ref": "", "base_ref": ""}
    )
    return {"github": github}


def push_context() -> dict[str, Any]:
    """A push: the event is known, its payload is not (but it has no workflow_run)."""
    payload = Partial({"workflow_run": None, "inputs": None})
    return {"github": Partial({"event_name": "push", "event": payload}), "inputs": None}


def chained_context(parent_event: str) -> dict[str, Any]:
    """A workflow_run child started because its parent ran on `parent_event`: a parent
    dispatched by hand gives `github.event.workflow_run.event == 'workflow_dispatch'`."""
    payload = Partial({"workflow_run": Partial({"event": parent_event})})
    return {"github": Partial({"event_name": "workflow_run", "event": payload})}


def neutral_context() -> dict[str, Any]:
    """Nothing known: a condition false here is false whatever fired the run."""
    return {}


def falsy_under(raw: Any, context: dict[str, Any]) -> bool:
    """True when the `if:` value is certainly falsy in `context`; unparsable text is not."""
    try:
        return truth(condition_value(raw, context)) is False
    except (ExpressionError, RecursionError):
        return False
