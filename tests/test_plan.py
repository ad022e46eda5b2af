"""The plan: which lanes a pass takes, in what order, and what each asks for."""

from __future__ import annotations

import pytest

from integrator import integrate, plan
from lanes import submit as submit_mod
from lanes.config import Config
from tests.conftest import hand_submit, stage
from tests.test_integrate import (
    WAVE,
    make_lane,
    version_frag,
)


def test_read_takes_submitted_lanes_in_submission_order(cfg: Config) -> None:
    make_lane(cfg, "b", {"src/b.py": "b\n"}, submit=False)
    make_lane(cfg, "a", {"src/a.py": "a\n"}, [version_frag("patch"), version_frag("minor")])
    make_lane(cfg, "open", {"src/o.py": "o\n"}, submit=False)  # never submitted
    submit_mod.submit(cfg, WAVE, "b")
    stage(cfg, WAVE)
    the_plan = plan.read(cfg, WAVE)
    assert [lp.lane for lp in the_plan.lanes] == ["a", "b"]
    a = the_plan.lanes[0]
    assert a.bump == "minor" and len(a.fragment_files) == 2 and a.problem is None
    assert the_plan.version == "0.3.5" and the_plan.applied_bump is None
    integrate.integrate(cfg, WAVE)
    stage(cfg, WAVE)
    again = plan.read(cfg, WAVE)
    assert again.lanes == [] and again.applied_bump == "minor"
    assert {ld.lane for ld in again.landed} == {"a", "b", None}  # None: the bump commit


@pytest.mark.parametrize(
    ("applied", "requested", "step_now"),
    [
        (None, None, None),
        (None, "patch", "patch"),
        ("minor", "patch", None),
        ("minor", "minor", None),
        ("minor", "major", "major"),
    ],
)
def test_version_step(applied: str | None, requested: str | None, step_now: str | None) -> None:
    assert plan.version_step(applied, requested) == step_now


def test_a_corrupt_fragment_file_is_a_problem_of_that_lane_only(cfg: Config) -> None:
    make_lane(cfg, "broken", {"src/x.py": "x\n"}, submit=False)
    bad = b'{"kind": "version", "bump": "huge"}'
    hand_submit(cfg, WAVE, "broken", {"00000000000000000009-version-bad000.json": bad})
    make_lane(cfg, "ok", {"src/y.py": "y\n"})
    stage(cfg, WAVE)
    lanes = plan.read(cfg, WAVE).lanes
    assert lanes[0].problem is not None and lanes[0].problem.reason == "bad-fragment"
    assert lanes[0].problem.files == ["00000000000000000009-version-bad000.json"]
    assert lanes[1].problem is None
