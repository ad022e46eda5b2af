"""The deploy workflow surface: RFC 6902 on round-trip YAML, untouched lines byte for byte."""

from __future__ import annotations

import copy
import difflib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from lanes import scaffold
from lanes.surfaces import deploy
from lanes.surfaces.deploy import PatchOp

SEED = scaffold.DEPLOY

# A workflow written by a human in a hurry: mixed indentation, wide comment gaps, flow
# collections, quoted scalars, a comment after a value. ruamel alone would rewrite it.
ODD = """\
# odd, but valid
name:   deploy   # two spaces too many
on:
    push:
        branches:    [main]     # wide
    workflow_dispatch: {}
env: {LEVEL: "1"}
jobs:
  deploy:
    steps:
    - uses: actions/checkout@v4    # pinned
    - name: 'Deploy'
      run: flyctl deploy
    env:
        K: v
        # a note about what follows
    runs-on: ubuntu-latest
"""


def ops(*raw: dict[str, Any]) -> list[PatchOp]:
    return [PatchOp.model_validate(op) for op in raw]


def load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(text)


def removed_and_added(before: str, after: str) -> tuple[list[str], list[str]]:
    """Lines of `before` that are gone from `after`, and lines that are new."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    gone, new = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            gone += a[i1:i2]
            new += b[j1:j2]
    return gone, new


def test_add_member_inserts_one_line_and_nothing_else_moves() -> None:
    out = deploy.apply(SEED, ops({"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"}))
    assert out == SEED.replace(
        "      FLY_APP: autonomath-api   # the production app\n",
        "      FLY_APP: autonomath-api   # the production app\n      REGION: nrt\n",
    )


def test_append_step() -> None:
    out = deploy.apply(
        SEED,
        ops({"op": "add", "path": "/jobs/deploy/steps/-", "value": {"name": "Smoke", "run": "x"}}),
    )
    assert out == SEED + "      - name: Smoke\n        run: x\n"


def test_replace_keeps_the_comment_and_touches_one_line() -> None:
    out = deploy.apply(SEED, ops({"op": "replace", "path": "/concurrency/group", "value": "prod"}))
    gone, new = removed_and_added(SEED, out)
    assert gone == ["  group: deploy   # never two deploys at once\n"]
    assert len(new) == 1 and new[0].startswith("  group: prod") and "# never two" in new[0]


def test_remove_keeps_a_comment_line_that_follows() -> None:
    text = SEED.replace(
        "      FLY_APP: autonomath-api   # the production app\n",
        "      FLY_APP: autonomath-api   # the production app\n      REGION: nrt\n"
        "    # steps run in order\n",
    )
    out = deploy.apply(text, ops({"op": "remove", "path": "/jobs/deploy/env/REGION"}))
    assert removed_and_added(text, out) == (["      REGION: nrt\n"], [])


def test_odd_formatting_survives_outside_the_edit() -> None:
    patch = ops(
        {"op": "add", "path": "/jobs/deploy/env/R", "value": "nrt"},
        {"op": "replace", "path": "/jobs/deploy/runs-on", "value": "ubuntu-24.04"},
        {"op": "add", "path": "/jobs/deploy/steps/1", "value": {"name": "Check"}},
    )
    out = deploy.apply(ODD, patch)
    expected = load(ODD)
    expected["jobs"]["deploy"]["env"]["R"] = "nrt"
    expected["jobs"]["deploy"]["runs-on"] = "ubuntu-24.04"
    expected["jobs"]["deploy"]["steps"].insert(1, {"name": "Check"})
    assert load(out) == expected
    gone, _ = removed_and_added(ODD, out)
    # Only the lines in the patched blocks may be rewritten; every other byte stays.
    for line in gone:
        assert line.strip().startswith(("K:", "runs-on:")), line
    for kept in (
        "name:   deploy   # two spaces too many\n",
        "        branches:    [main]     # wide\n",
        'env: {LEVEL: "1"}\n',
        "    - uses: actions/checkout@v4    # pinned\n",
        "    - name: 'Deploy'\n",
        "        # a note about what follows\n",
    ):
        assert kept in out


def test_rfc6902_operations() -> None:
    text = "a:\n  b: 1\n  'x/y': 2\n  'm~n': 3\nl: [1, 2, 3]\n"
    out = deploy.apply(
        text,
        ops(
            {"op": "test", "path": "/a/b", "value": 1},
            {"op": "copy", "from": "/a/b", "path": "/c"},
            {"op": "move", "from": "/a/x~1y", "path": "/d"},
            {"op": "remove", "path": "/a/m~0n"},
            {"op": "add", "path": "/l/1", "value": 9},
            {"op": "remove", "path": "/l/0"},
            {"op": "replace", "path": "/l/2", "value": 0},
        ),
    )
    assert load(out) == {"a": {"b": 1}, "l": [9, 2, 0], "c": 1, "d": 2}


@pytest.mark.parametrize(
    ("op", "why"),
    [
        ({"op": "remove", "path": "/jobs/nope"}, "does not exist"),
        ({"op": "replace", "path": "/jobs/nope", "value": 1}, "does not exist"),
        ({"op": "test", "path": "/name", "value": "other"}, "test failed"),
        ({"op": "add", "path": "/jobs/deploy/steps/9", "value": {}}, "out of range"),
        ({"op": "add", "path": "/jobs/deploy/steps/01", "value": {}}, "not an array index"),
        ({"op": "move", "from": "/jobs", "path": "/jobs/deploy/x"}, "own child"),
        ({"op": "add", "path": "/name/x", "value": 1}, "scalar"),
        ({"op": "remove", "path": ""}, "whole document"),
    ],
)
def test_patches_that_do_not_apply_are_refused(op: dict[str, Any], why: str) -> None:
    with pytest.raises(deploy.PatchError) as err:
        deploy.apply(SEED, ops(op))
    assert why in err.value.message
    assert err.value.code == "bad-fragment"


def test_a_crlf_workflow_keeps_its_line_endings() -> None:
    crlf = SEED.replace("\n", "\r\n")
    out = deploy.apply(crlf, ops({"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"}))
    assert out == deploy.apply(
        SEED, ops({"op": "add", "path": "/jobs/deploy/env/REGION", "value": "nrt"})
    ).replace("\n", "\r\n")
    assert "\r\n" in out and out.count("\r\n") == out.count("\n")


def test_strings_a_yaml_1_1_reader_takes_for_booleans_are_quoted() -> None:
    value = {"A": "on", "B": "off", "C": "plain", "D": ["yes", "No"]}
    out = deploy.apply(SEED, ops({"op": "add", "path": "/jobs/deploy/env/X", "value": value}))
    assert "A: 'on'" in out and "B: 'off'" in out and "C: plain" in out
    assert "- 'yes'" in out and "- 'No'" in out
    assert YAML(typ="safe").load(out)["jobs"]["deploy"]["env"]["X"] == value


def test_invalid_yaml_is_refused() -> None:
    with pytest.raises(deploy.PatchError):
        deploy.apply("a: [1, 2\n", ops({"op": "add", "path": "/b", "value": 1}))


def test_overlap_rules() -> None:
    assert deploy.overlap("/jobs/deploy/env", "/jobs/deploy/env/REGION")
    assert deploy.overlap("/jobs/deploy/env/REGION", "/jobs/deploy/env/REGION")
    assert not deploy.overlap("/jobs/deploy/env/REGION", "/jobs/deploy/env/ZONE")
    assert not deploy.overlap("/jobs/deploy/steps/-", "/jobs/deploy/steps/-")  # two appends
    assert deploy.overlap("/jobs/deploy/steps", "/jobs/deploy/steps/-")
    assert deploy.touched(ops({"op": "test", "path": "/a", "value": 1})[0]) == []
    move = ops({"op": "move", "from": "/a", "path": "/b"})[0]
    assert deploy.touched(move) == ["/a", "/b"]


def test_conflict_between_lanes_includes_shifted_list_indices() -> None:
    def op(**raw: Any) -> PatchOp:
        return PatchOp.model_validate({"value": 1, **raw} if raw["op"] != "remove" else raw)

    steps = "/jobs/deploy/steps"
    insert, remove = op(op="add", path=f"{steps}/0"), op(op="remove", path=f"{steps}/1")
    by_index = op(op="replace", path=f"{steps}/2/run")
    append = op(op="add", path=f"{steps}/-")
    assert deploy.conflict(insert, by_index) and deploy.conflict(by_index, insert)
    assert deploy.conflict(remove, by_index)
    assert deploy.conflict(op(op="move", **{"from": f"{steps}/0"}, path="/x"), by_index)
    assert deploy.conflict(insert, op(op="test", path=f"{steps}/3/name"))
    copy_in = op(op="copy", **{"from": f"{steps}/0"}, path=f"{steps}/1")
    assert deploy.conflict(copy_in, by_index)  # a copy into a list inserts too
    copy_out = op(op="copy", **{"from": f"{steps}/0"}, path="/jobs/other")
    assert not deploy.conflict(copy_out, by_index)  # its source stays where it was
    assert not deploy.conflict(append, by_index)  # an append moves no element
    assert not deploy.conflict(append, append)
    assert not deploy.conflict(insert, op(op="replace", path="/jobs/deploy/env/0"))  # other list
    assert not deploy.conflict(op(op="add", path="/jobs/deploy/env/A"), by_index)  # a key


# -- properties --------------------------------------------------------------------------

_MAPS = ["", "/on", "/on/push", "/concurrency", "/jobs", "/jobs/deploy", "/jobs/deploy/env"]
_LEAVES = ["/name", "/concurrency/group", "/jobs/deploy/runs-on", "/jobs/deploy/env/FLY_APP"]
_scalar = (
    st.text(alphabet="abcXYZ 019-_.:#", max_size=10)
    | st.sampled_from(["on", "yes", "1.0", "null", "", "# not a comment", "a: b"])
    | st.integers(-5, 5)
    | st.booleans()
)
_value = _scalar | st.dictionaries(
    st.from_regex(r"[a-z]{1,5}", fullmatch=True), _scalar, max_size=3
)


@st.composite
def _idempotent_ops(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Operations whose second application is a no-op by RFC 6902 itself: add or replace
    of an object member (removes and appends are applied once by the pass's trailers)."""
    found = []
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            parent = draw(st.sampled_from(_MAPS))
            key = draw(st.from_regex(r"[A-Z]{1,6}", fullmatch=True))
            found.append({"op": "add", "path": f"{parent}/{key}", "value": draw(_value)})
        else:
            leaf = draw(st.sampled_from(_LEAVES))
            found.append({"op": "replace", "path": leaf, "value": draw(_scalar)})
    return found


def _reference(doc: Any, raw: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in raw:
        *parents, last = deploy.tokens(op["path"])
        node = doc
        for token in parents:
            node = node[token]
        node[last] = op["value"]
    return doc


@settings(max_examples=40, deadline=None)
@given(raw=_idempotent_ops(), base=st.sampled_from([SEED, ODD.replace("{LEVEL", "{L")]))
def test_patching_is_deterministic_idempotent_and_exact(
    raw: list[dict[str, Any]], base: str
) -> None:
    if base is not SEED:
        raw = [
            op for op in raw if not op["path"].startswith(("/concurrency", "/jobs/deploy/env/F"))
        ]
        if not raw:
            return
    patch = ops(*raw)
    once = deploy.apply(base, patch)
    assert deploy.apply(base, patch) == once  # deterministic
    assert deploy.apply(once, patch) == once  # applying twice changes nothing
    assert load(once) == _reference(load(base), raw)  # it does what RFC 6902 says
    gone, _ = removed_and_added(base, once)
    replaced = {op["path"] for op in raw if op["op"] == "replace"}
    # Untouched lines stay byte for byte. For the seed (which ruamel round-trips) only the
    # replaced leaves' own lines may go; an added member only adds lines.
    if base is SEED:
        assert len(gone) <= len(replaced)
        for line in gone:
            key = line.split(":")[0].strip()
            assert any(path.rsplit("/", 1)[1] == key for path in replaced), line


ANCHORED = """\
name: deploy
on: [workflow_dispatch]
x-env: &common
  REGION: nrt
jobs:
  deploy:
    runs-on: ubuntu-latest
    env: *common
    steps:
      - run: ./deploy.sh
  smoke:
    runs-on: ubuntu-latest
    env:
      <<: *common
      SMOKE: "1"
    steps:
      - run: ./smoke.sh
"""


@pytest.mark.parametrize(
    "pointer", ["/jobs/deploy/env/LEVEL", "/x-env/LEVEL", "/jobs/smoke/env/LEVEL"]
)
def test_a_patch_through_a_yaml_anchor_is_refused(pointer: str) -> None:
    """Under an alias, a change to one path would change the other place that uses it."""
    with pytest.raises(deploy.PatchError, match="YAML anchor"):
        deploy.apply(ANCHORED, [PatchOp(op="add", path=pointer, value="debug")])


def test_a_patch_beside_an_anchor_still_applies() -> None:
    out = deploy.apply(ANCHORED, [PatchOp(op="add", path="/jobs/deploy/timeout-minutes", value=9)])
    assert "timeout-minutes: 9" in out and out.count("REGION: nrt") == 1
