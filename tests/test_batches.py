"""Testing in batches: stacks tested once, red ones bisected, speculation; test runs counted
by a test command that appends a line to a file outside the repository, never timed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from integrator import dry_run, integrate
from lanes import config
from lanes.config import Config
from lanes.errors import BadInput
from lanes.surfaces import manifest as manifest_surface
from tests.conftest import commit_file, git, publish, run_lanes
from tests.test_integrate import (
    WAVE,
    deploy_frag,
    events,
    landed_lanes,
    make_lane,
    manifest_frag,
    migration,
    show,
    step,
    version_frag,
)

# The test: every run appends the lanes it holds to $RUNS; it fails while a bad_* file is
# in src/, and while both halves of the pair are.
COUNTING = (
    'echo "${LANES_LANES:-main}" >> "$RUNS"; '
    'for f in src/bad_*.py; do [ -e "$f" ] && { echo "broken by $f"; exit 1; }; done; '
    'if [ -e src/pair_a.py ] && [ -e src/pair_b.py ]; then echo "the pair"; exit 1; fi; '
    "exit 0"
)


def configure(repo: Path, command: str, **more: object) -> Config:
    """The operator sets test_command (and batch, test_jobs) on main, by hand."""
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    lines = [f"test_command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in more.items()]
    text = text.replace('test_command = ""', "\n".join(lines))
    commit_file(repo, "pyproject.toml", text, "ci: the integrator's tests")
    publish(repo)  # on a remote, pushed: the pass lands on the remote's main
    return config.load(repo)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "runs.log"
    monkeypatch.setenv("RUNS", str(log))
    return log


def count(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def wave_of(cfg: Config, n: int, special: dict[int, str] | None = None) -> list[str]:
    """n one-commit lanes, each asking for a patch bump; lane i writes src/<special[i]>.py
    (bad_*: breaks the test; pair_a, pair_b: break it together), else its own file."""
    names = []
    for i in range(n):
        name = f"l{i:02d}"
        stem = (special or {}).get(i, f"ok_{i}")
        make_lane(cfg, name, {f"src/{stem}.py": f"{name}\n"}, [version_frag("patch")])
        names.append(name)
    return names


def passes_on_main(repo: Path, command: str, tmp_path: Path) -> bool:
    """Run the test on main's tree as it is now, in a checkout of its own."""
    where = tmp_path / f"check-{git(repo, 'rev-parse', '--short', 'main')}"
    git(repo, "worktree", "add", "-q", "--detach", str(where), "main")
    try:
        env = {**os.environ, "RUNS": os.devnull}
        return subprocess.run(["sh", "-c", command], cwd=where, env=env).returncode == 0
    finally:
        git(repo, "worktree", "remove", "--force", str(where))


def runs_in_ledger(cfg: Config) -> list[dict[str, object]]:
    """The test runs the ledger holds: `tested` rows, or the done row's list while the
    ledger has no such event."""
    rows = [ev.details for ev in events(cfg, "tested")]
    if rows:
        return rows
    return [t for ev in events(cfg, "integrate-done") for t in ev.details.get("tests", [])]


# -- how many runs ---------------------------------------------------------------------------


def test_24_green_lanes_take_one_run(seed_repo: Path, runs: Path, tmp_path: Path) -> None:
    cfg = configure(seed_repo, COUNTING)
    lanes = wave_of(cfg, 24)
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == lanes and result.bounced == []
    assert count(runs) <= 2
    assert count(runs) == 1  # one stack of 24, green
    assert runs.read_text().split() == lanes  # the run held every lane
    assert [(r.lanes, r.ok) for r in result.tests] == [(lanes, True)]
    [row] = runs_in_ledger(cfg)
    assert row["lanes"] == lanes and row["result"] == "pass" and float(str(row["seconds"])) >= 0
    assert result.version == "0.3.6"  # the tested tree held the bump: it is main's
    assert passes_on_main(seed_repo, COUNTING, tmp_path)


@pytest.mark.parametrize("bad", [0, 13, 23])
def test_one_bad_lane_among_24_is_found_in_at_most_11_runs(
    seed_repo: Path, runs: Path, tmp_path: Path, bad: int
) -> None:
    cfg = configure(seed_repo, COUNTING)
    lanes = wave_of(cfg, 24, {bad: f"bad_{bad}"})
    result = integrate.integrate(cfg, WAVE)
    assert count(runs) <= 11, runs.read_text()
    assert [(b.lane, b.reason) for b in result.bounced] == [(lanes[bad], "test-failed")]
    assert f"broken by src/bad_{bad}.py" in result.bounced[0].message  # its failing output
    assert result.integrated == [lane for lane in lanes if lane != lanes[bad]]
    assert landed_lanes(seed_repo) == result.integrated
    assert passes_on_main(seed_repo, COUNTING, tmp_path)
    assert len(runs_in_ledger(cfg)) == count(runs)
    # never a tree twice: each run held a different set of lanes
    held = runs.read_text().splitlines()
    assert len(held) == len(set(held))


def test_two_bad_lanes_both_bounce_and_the_rest_lands(
    seed_repo: Path, runs: Path, tmp_path: Path
) -> None:
    cfg = configure(seed_repo, COUNTING)
    lanes = wave_of(cfg, 24, {4: "bad_x", 17: "bad_y"})
    result = integrate.integrate(cfg, WAVE)
    assert [(b.lane, b.reason) for b in result.bounced] == [
        (lanes[4], "test-failed"),
        (lanes[17], "test-failed"),
    ]
    assert result.integrated == [lane for i, lane in enumerate(lanes) if i not in (4, 17)]
    assert count(runs) <= 2 * 11
    assert passes_on_main(seed_repo, COUNTING, tmp_path)


def test_a_pair_that_fails_only_together_bounces_the_later_naming_both(
    seed_repo: Path, runs: Path, tmp_path: Path
) -> None:
    cfg = configure(seed_repo, COUNTING)
    lanes = wave_of(cfg, 12, {3: "pair_a", 9: "pair_b"})
    result = integrate.integrate(cfg, WAVE)
    [bounce] = result.bounced
    assert (bounce.lane, bounce.reason, bounce.together_with) == (
        lanes[9],
        "test-failed",
        [lanes[3]],
    )
    assert lanes[3] in bounce.message and "together" in bounce.message
    assert "the pair" in bounce.message  # the failing output of the two together
    assert lanes[3] in result.integrated and len(result.integrated) == 11
    assert result.flaky == []
    [row] = [ev.details for ev in events(cfg, "bounced")]
    assert row["together_with"] == [lanes[3]]
    assert passes_on_main(seed_repo, COUNTING, tmp_path)


def test_a_lane_that_fails_in_the_stack_and_passes_alone_is_reported_flaky(
    seed_repo: Path, runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "failed-once"
    monkeypatch.setenv("FLAG", str(flag))
    once = (
        'echo "${LANES_LANES:-main}" >> "$RUNS"; '
        'if [ ! -e "$FLAG" ]; then touch "$FLAG"; echo "a flake"; exit 1; fi'
    )
    cfg = configure(seed_repo, once)
    lanes = wave_of(cfg, 8)
    result = integrate.integrate(cfg, WAVE)
    # The first run (all 8) failed, every later one passed: the last lane is blamed by the
    # bisection, passes alone, and passes with the lane that seemed to break it.
    [bounce] = result.bounced
    assert (bounce.lane, bounce.reason) == (lanes[-1], "test-flaky")
    assert "flaky" in bounce.message and "a flake" in bounce.message
    assert result.flaky == [lanes[-1]]
    assert result.integrated == lanes[:-1]  # every tree they are in passed
    assert passes_on_main(seed_repo, once, tmp_path)
    held = runs.read_text().splitlines()
    assert len(held) == len(set(held))  # still no tree run twice


def test_batch_1_tests_each_lane_alone(seed_repo: Path, runs: Path) -> None:
    cfg = configure(seed_repo, COUNTING, batch=1)
    lanes = wave_of(cfg, 5, {2: "bad_2"})
    result = integrate.integrate(cfg, WAVE)
    assert count(runs) == 5
    assert [b.lane for b in result.bounced] == [lanes[2]]
    # each run held the lanes landed so far and the one under test
    assert runs.read_text().splitlines() == [
        "l00",
        "l00 l01",
        "l00 l01 l02",
        "l00 l01 l03",
        "l00 l01 l03 l04",
    ]


def test_a_lane_judged_on_top_of_a_lane_that_bounces_is_judged_again(
    seed_repo: Path, runs: Path
) -> None:
    """b conflicts with a while a is on the stack; a breaks the test and bounces: b is
    landed again on the base without a, and lands, as it would have one at a time."""
    cfg = configure(seed_repo, COUNTING)
    make_lane(cfg, "a", {"src/app.py": '"""a"""\n', "src/bad_a.py": "x\n"})
    make_lane(cfg, "b", {"src/app.py": '"""b"""\n'})
    make_lane(cfg, "c", {"src/c.py": "c\n"})
    result = integrate.integrate(cfg, WAVE)
    assert [(b.lane, b.reason) for b in result.bounced] == [("a", "test-failed")]
    assert result.integrated == ["b", "c"]
    assert show(seed_repo, "src/app.py") == '"""b"""\n'


def test_the_tree_tested_is_the_tree_main_gets_version_bump_included(
    seed_repo: Path, runs: Path, tmp_path: Path
) -> None:
    command = 'echo x >> "$RUNS"; grep -q \'"version": "0.4.0"\' server.json'
    cfg = configure(seed_repo, command)
    make_lane(cfg, "a", {"src/a.py": "a\n"}, [version_frag("minor")])
    make_lane(cfg, "b", {"src/b.py": "b\n"}, [version_frag("patch")])
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["a", "b"] and result.version == "0.4.0"
    assert count(runs) == 1
    assert passes_on_main(seed_repo, command, tmp_path)


def test_main_that_fails_the_test_lands_only_what_passes(seed_repo: Path, runs: Path) -> None:
    """main itself fails: a stack holding the lane that fixes it passes and lands; with no
    fix, each lane is tested alone and bounces, told that main fails too."""
    command = 'echo "${LANES_LANES:-main}" >> "$RUNS"; test -e src/fixed.py'
    cfg = configure(seed_repo, command)
    make_lane(cfg, "a", {"src/a.py": "a\n"})
    make_lane(cfg, "b", {"src/b.py": "b\n"})
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == []
    assert [b.reason for b in result.bounced] == ["test-failed", "test-failed"]
    assert all(f"fails on {cfg.main} as it is" in b.message for b in result.bounced)
    assert "main" in runs.read_text().split()  # main alone was tested once
    assert count(runs) <= 5
    make_lane(cfg, "fix", {"src/fixed.py": "ok\n"})
    make_lane(cfg, "after", {"src/after.py": "ok\n"})
    again = integrate.integrate(cfg, WAVE)
    assert again.integrated == ["fix", "after"] and again.bounced == []


# -- speculation ---------------------------------------------------------------------------

OVERLAP = (
    'echo "$(pwd)" >> "$RUNS"; touch "$SEEN/$$"; sleep 0.5; '
    '[ "$(ls "$SEEN" | wc -l)" -gt 1 ] && echo overlap >> "$OVERLAPS"; rm "$SEEN/$$"; '
    'for f in src/bad_*.py; do [ -e "$f" ] && exit 1; done; exit 0'
)


def test_test_jobs_test_stacks_at_once_each_in_its_own_worktree(
    seed_repo: Path, runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "seen").mkdir()
    monkeypatch.setenv("SEEN", str(tmp_path / "seen"))
    monkeypatch.setenv("OVERLAPS", str(tmp_path / "overlaps"))
    cfg = configure(seed_repo, OVERLAP, batch=3, test_jobs=2)
    lanes = wave_of(cfg, 9, {1: "bad_1"})
    result = integrate.integrate(cfg, WAVE)
    assert [b.lane for b in result.bounced] == [lanes[1]]
    assert result.integrated == [lane for lane in lanes if lane != lanes[1]]
    ran_in = runs.read_text().split()
    assert len(set(ran_in)) == 2  # two scratch worktrees, made once, reused for every run
    assert all(cfg.state_dir / integrate.SCRATCH in Path(p).parents for p in ran_in)
    assert (tmp_path / "overlaps").exists()  # two runs were under way at the same time
    assert passes_on_main(seed_repo, OVERLAP.replace("sleep 0.5", "true"), tmp_path)
    assert not (cfg.state_dir / integrate.SCRATCH).exists() or not list(
        (cfg.state_dir / integrate.SCRATCH).iterdir()
    )


def test_without_a_test_command_no_worktree_is_made(
    seed_repo: Path, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_worktree(*args: object) -> Path:
        raise AssertionError("a scratch worktree was made without a test command")

    monkeypatch.setattr(integrate, "_make_scratch", no_worktree)
    make_lane(cfg, "a", {"src/a.py": "a\n"}, [version_frag("minor")])
    make_lane(cfg, "b", {"src/app.py": '"""b"""\n'})
    result = integrate.integrate(cfg, WAVE)
    assert result.integrated == ["a", "b"] and result.version == "0.4.0"
    assert show(seed_repo, "src/app.py") == '"""b"""\n'


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"), [("batch", 0), ("batch", -3), ("test_jobs", 0), ("batch", True)]
)
def test_batch_and_test_jobs_are_whole_numbers_from_1(key: str, value: object) -> None:
    with pytest.raises(BadInput) as err:
        config.settings_from({key: value}, "lanes.toml")
    assert err.value.code == "bad-config" and err.value.exit_code == 2
    assert key in err.value.message and "1 or more" in err.value.message


def test_batch_and_test_jobs_defaults() -> None:
    s = config.settings_from({}, "defaults")
    assert (s.batch, s.test_jobs) == (32, 1)


def test_the_dry_run_shows_the_stacks_it_would_test(seed_repo: Path) -> None:
    cfg = configure(seed_repo, COUNTING, batch=2, test_jobs=2)
    make_lane(cfg, "a", {"src/a.py": "a\n"})
    make_lane(cfg, "clash", {"scripts/migrations/x.sql": "x\n"}, [manifest_frag("nope.sql")])
    make_lane(cfg, "b", {"src/b.py": "b\n"})
    make_lane(cfg, "c", {"src/c.py": "c\n"})
    report = dry_run.predict(cfg, WAVE)
    assert report.batches == [["a", "b"], ["c"]] and report.test_jobs == 2
    assert report.batch == 2
    proc = run_lanes(seed_repo, "integrate", WAVE, "--dry-run")
    assert "stack 1: a, b" in proc.stderr and "2 at a time" in proc.stderr


# -- batch = 1 and batch = 32 land the same ------------------------------------------------

LANE = st.fixed_dictionaries(
    {
        "app": st.sampled_from([None, "x", "y"]),  # a line of src/app.py: lanes conflict
        "bad": st.booleans(),
        "entry": st.booleans(),
        "bump": st.sampled_from([None, "patch", "minor"]),
        "deploy": st.sampled_from([None, "step", "region-nrt", "region-hnd"]),
    }
)


def _build(cfg: Config, lanes: list[dict[str, object]]) -> None:
    for i, spec in enumerate(lanes):
        name = f"h{i}"
        files = {f"src/{name}.py": f"{name}\n"}
        frags: list[object] = []
        if spec["app"]:
            files["src/app.py"] = f'"""{spec["app"]}"""\n'
        if spec["bad"]:
            files[f"src/bad_{name}.py"] = "x\n"
        if spec["entry"]:
            more, entry = migration(name, 400 + i)
            files.update(more)
            frags.append(manifest_frag(entry))
        if spec["bump"]:
            frags.append(version_frag(str(spec["bump"])))
        if spec["deploy"] == "step":
            frags.append(step(f"step-{name}"))
        elif spec["deploy"]:
            value = str(spec["deploy"]).removeprefix("region-")
            frags.append(
                deploy_frag({"op": "add", "path": "/jobs/deploy/env/REGION", "value": value})
            )
        make_lane(cfg, name, files, frags)


def _outcome(cfg: Config) -> tuple[object, ...]:
    repo = cfg.main_checkout
    lanes = landed_lanes(repo)
    files = {lane: show(repo, f"src/{lane}.py") for lane in lanes}
    deploy_text = show(repo, ".github/workflows/deploy.yml")
    steps = Counter(line.strip() for line in deploy_text.splitlines() if "name: step-" in line)
    return (
        lanes,
        manifest_surface.entries(show(repo, "scripts/migrations/autonomath_boot_manifest.txt")),
        json.loads(show(repo, "server.json"))["version"],
        files,
        deploy_text,
        dict(steps),
        show(repo, "src/app.py"),
    )


@settings(
    max_examples=6,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure is small: no shrinking
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(lanes=st.lists(LANE, min_size=2, max_size=6))
def test_batch_1_and_batch_32_land_the_same(
    lanes: list[dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from lanes import scaffold

    root = tmp_path_factory.mktemp("wave")
    (root / "wt").mkdir()
    repo = scaffold.make_seed_repo(root / "jpcite", root / "wt")
    text = (repo / "pyproject.toml").read_text(encoding="utf-8")
    text = text.replace('test_command = ""', f"test_command = {json.dumps(COUNTING)}")
    commit_file(repo, "pyproject.toml", text, "ci: the integrator's tests")
    _build(config.load(repo), lanes)
    copy = root / "copy" / "jpcite"
    shutil.copytree(repo, copy, symlinks=True)
    outcomes = []
    for where, size in ((repo, 1), (copy, 32)):
        cfg = config.load(where)
        cfg = cfg.model_copy(update={"settings": cfg.settings.model_copy(update={"batch": size})})
        os.environ["RUNS"] = str(root / f"runs-{size}")
        try:
            integrate.integrate(cfg, WAVE)
        finally:
            del os.environ["RUNS"]
        outcomes.append(_outcome(cfg))
        assert Counter(landed_lanes(where)) == Counter(set(landed_lanes(where)))  # each once
    assert outcomes[0] == outcomes[1]
