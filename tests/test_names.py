"""Names: what is refused, and that everything the spec allows is accepted."""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanes.errors import BadInput
from lanes.names import check_agent, check_entry, check_lane, check_wave

SPEC_WAVE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")
SPEC_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@pytest.mark.parametrize(
    "bad",
    ["", "A", "-x", ".x", "a/b", "a..b", "..", "x" * 41, "a b", "é", "a\n", "/tmp", "a.", "b.lock"],
)
def test_bad_wave_and_lane_names_are_refused(bad: str) -> None:
    for check in (check_wave, check_lane):
        with pytest.raises(BadInput) as info:
            check(bad)
        assert info.value.exit_code == 2
        assert "matches" in info.value.hint


@pytest.mark.parametrize("good", ["44", "w45", "api-dim-a", "a.b_c-d", "x" * 40])
def test_good_names_pass(good: str) -> None:
    assert check_wave(good) == good
    assert check_lane(good) == good


@given(st.text(max_size=70))
def test_wave_rule_is_exactly_the_spec(text: str) -> None:
    expected = (
        bool(SPEC_WAVE.match(text))
        and ".." not in text
        and not text.endswith(("\n", ".", ".lock"))  # the last two: git refuses the branch
    )
    try:
        check_wave(text)
        accepted = True
    except BadInput:
        accepted = False
    assert accepted == expected


@given(st.text(max_size=70))
def test_agent_rule_is_exactly_the_spec(text: str) -> None:
    expected = bool(SPEC_AGENT.match(text)) and not text.endswith("\n")  # '..' is allowed
    try:
        check_agent(text)
        accepted = True
    except BadInput:
        accepted = False
    assert accepted == expected


@pytest.mark.parametrize("bad", ["../x.sql", "a/b.sql", ".hidden.sql", "", "a b.sql", "x\\y.sql"])
def test_entries_must_be_plain_file_names(bad: str) -> None:
    with pytest.raises(BadInput):
        check_entry(bad)
    assert check_entry("261_legal_chain_v2.sql") == "261_legal_chain_v2.sql"


def test_an_agent_id_may_hold_two_dots_and_hints_read_well() -> None:
    assert check_agent("claude..1") == "claude..1"
    with pytest.raises(BadInput) as info:
        check_entry("../x.sql")
    assert info.value.hint.startswith("an entry name is a plain file name")


@settings(max_examples=60, deadline=None)
@given(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True))
def test_every_accepted_lane_name_makes_a_branch_git_accepts(name: str) -> None:
    try:
        check_lane(name)
    except BadInput:
        return
    ref = f"refs/heads/lanes/{name}/{name}"
    assert subprocess.run(["git", "check-ref-format", ref], check=False).returncode == 0
