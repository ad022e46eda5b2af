"""GitHub expressions in three-valued logic: GitHub's coercion rules, and soundness."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanes.surfaces import expressions as ex


def value(text: str, context: dict[str, Any] | None = None) -> Any:
    return ex.evaluate(ex.parse(text), context or {})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null == 0", True),
        ("'' == 0", True),
        ("' 0xff ' == 255", True),
        ("'1' == 1", True),
        ("true == 1", True),
        ("'ABC' == 'abc'", True),
        ("'abc' != 'abd'", True),
        ("'abc' == 1", False),
        ("NaN == NaN", False),
        ("'b' > 'A'", True),
        ("1 < 2 && 2 <= 2", True),
        ("'It''s' == 'it''S'", True),
        ("!''", True),
        ("!'false'", False),  # a non-empty string is truthy, even 'false'
        ("contains('Hello world', 'WORLD')", True),
        ("startsWith('refs/heads/main', 'refs/heads/')", True),
        ("endsWith('deploy.yml', '.YML')", True),
        ("contains(null, 'x')", False),
        ("0 || 'x'", "x"),
        ("'' && 'x'", ""),
        ("-2.99e-2 < 0", True),
    ],
)
def test_literals_operators_and_coercion_follow_github(text: str, expected: Any) -> None:
    assert value(text) == expected


def test_property_names_ignore_case_and_brackets_work() -> None:
    ctx = {"github": {"event_name": "push", "event": {"ref": "refs/heads/main"}}}
    assert value("GitHub.Event_Name == 'PUSH'", ctx) is True
    assert value("github['event']['ref']", ctx) == "refs/heads/main"
    assert value("github.event.missing.deeper", ctx) is None


@pytest.mark.parametrize(
    "text", ["a ==", "(a", "a.", "'open", "a b", "f(a,", 'a == "double"', "1abc"]
)
def test_malformed_expressions_are_refused(text: str) -> None:
    with pytest.raises(ex.ExpressionError):
        ex.parse(text)


def test_unknowns_stay_unknown_unless_the_logic_decides() -> None:
    assert ex.truth(value("needs.a.result == 'success'")) is None
    assert ex.truth(value("needs.a.result == 'success' || true")) is True
    assert ex.truth(value("needs.a.result == 'success' && false")) is False
    assert ex.truth(value("!(needs.a.result && false)")) is True
    assert ex.truth(value("always()")) is True
    assert ex.truth(value("success()")) is None


def test_the_dispatch_context_knows_only_what_a_dispatch_makes_certain() -> None:
    d = ex.dispatch_context()
    assert value("github.event_name", d) == "workflow_dispatch"
    assert value("github.event.workflow_run.conclusion", d) is None
    assert value("github.event.head_commit.message", d) is None
    assert isinstance(value("github.event.inputs.env", d), ex.Unknown)
    assert isinstance(value("github.ref", d), ex.Unknown)
    assert isinstance(value("steps.x.outputs.y", d), ex.Unknown)


@pytest.mark.parametrize(
    ("raw", "falsy"),
    [
        ("${{ github.event_name == 'push' }}", True),
        ("github.event_name == 'push'", True),
        ("${{ github.event_name == 'push' }} || true", False),  # a template string: truthy
        (False, True),
        (True, False),
        ("github.event_name ==", False),  # unparsable: never flagged
    ],
)
def test_if_values_with_and_without_the_wrapper(raw: Any, falsy: bool) -> None:
    assert ex.falsy_under(raw, ex.dispatch_context()) is falsy


# -- soundness: what the abstract evaluation claims holds for every concrete run ----------

PATHS = [
    "github.event_name",
    "github.event.workflow_run.conclusion",
    "github.event.workflow_run",
    "github.event.head_commit.message",
    "github.event.inputs.env",
    "github.ref",
    "needs.build.result",
    "steps.s.outputs.ok",
]
LITERALS = [
    "'success'",
    "'push'",
    "'workflow_dispatch'",
    "'refs/heads/main'",
    "''",
    "0",
    "1",
    "true",
    "false",
    "null",
]
SCALARS = st.sampled_from(
    ["success", "push", "", "main", "refs/heads/main", "true", "0", 0, 1, 2.5, True, False, None]
)

atoms = st.sampled_from(PATHS + LITERALS + ["always()"])


def _binary(ops: list[str]) -> Any:
    return lambda inner: st.tuples(inner, st.sampled_from(ops), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    )


exprs = st.recursive(
    atoms,
    lambda inner: st.one_of(
        _binary(["&&", "||"])(inner),
        _binary(["==", "!=", "<", ">="])(inner),
        inner.map(lambda e: f"!{e}"),
        st.tuples(st.sampled_from(["contains", "startsWith"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
    ),
    max_leaves=6,
)


@st.composite
def dispatched_runs(draw: st.DrawFn) -> dict[str, Any]:
    """A concrete run started by hand: the dispatch facts, anything for the rest."""
    return {
        "github": {
            "event_name": "workflow_dispatch",
            "ref": draw(SCALARS),
            "head_ref": "",
            "base_ref": "",
            "event": {"inputs": {"env": draw(SCALARS)}, "ref": draw(SCALARS)},
        },
        "needs": {"build": {"result": draw(SCALARS)}},
        "steps": {"s": {"outputs": {"ok": draw(SCALARS)}}},
    }


@settings(max_examples=400, deadline=None)
@given(exprs, dispatched_runs())
def test_a_verdict_under_the_dispatch_context_holds_in_every_dispatched_run(
    text: str, run: dict[str, Any]
) -> None:
    node = ex.parse(text)
    claimed = ex.truth(ex.evaluate(node, ex.dispatch_context()))
    actual = ex.truth(ex.evaluate(node, run))
    assert actual is not None
    if claimed is not None:
        assert claimed == actual, text
